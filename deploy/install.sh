#!/bin/sh
# The container image's install steps, in one place: the Dockerfile runs them, and so does
# tests/integration/test_container_recipe.py (in a fresh virtualenv, without a Docker engine), so the test
# checks what the image does.
#
#   deploy/install.sh wheel SRC OUTDIR            build the sdist and the wheel of the source tree SRC into OUTDIR; fails when
#                                                 the build log has a deprecation warning
#   deploy/install.sh venv WHEEL PREFIX [EXTRAS]  a virtualenv at PREFIX made from the wheel only (and its
#                                                 EXTRAS, comma-separated, from the package index); no torch,
#                                                 no build cache
#
# PYTHON (default python3) is the interpreter that builds and that the virtualenv is made from.
set -eu

PYTHON=${PYTHON:-python3}

wheel() {
    src=$1 out=$2
    mkdir -p "$out"
    if ! "$PYTHON" -c "import build" 2>/dev/null; then
        "$PYTHON" -m pip install --no-cache-dir --quiet "build>=1.2"
    fi
    log="$out/build.log"
    # the sdist first, then the wheel from it: a file missing from the sdist fails here
    "$PYTHON" -m build --outdir "$out" "$src" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    if grep -n -i "deprecat" "$log" >&2; then
        echo "install.sh: the wheel's build warned of a deprecation (above; full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
    ls "$out"/defectlens-*.whl
}

venv() {
    wheel=$1 prefix=$2 extras=${3:-}
    "$PYTHON" -m venv "$prefix"
    spec=$wheel
    if [ -n "$extras" ]; then
        spec="defectlens[$extras] @ file://$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"
    fi
    "$prefix/bin/pip" install --no-cache-dir --quiet --disable-pip-version-check "$spec"
    # pip and setuptools are not needed to run: dropping them keeps the image smaller and leaves no
    # installer beside the service
    "$prefix/bin/pip" uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
    if "$prefix/bin/python" -c "import torch" 2>/dev/null; then
        echo "install.sh: torch was installed into $prefix; the image must run without it" >&2
        exit 1
    fi
}

case "${1:-}" in
    wheel) shift; [ $# -eq 2 ] || { echo "usage: install.sh wheel SRC OUTDIR" >&2; exit 2; }; wheel "$@" ;;
    venv) shift; [ $# -ge 2 ] || { echo "usage: install.sh venv WHEEL PREFIX [EXTRAS]" >&2; exit 2; }; venv "$@" ;;
    *) echo "usage: install.sh wheel SRC OUTDIR | venv WHEEL PREFIX [EXTRAS]" >&2; exit 2 ;;
esac
