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
#   deploy/install.sh slim PREFIX                 drop from that virtualenv what never runs in the image: the
#                                                 packages' test suites, ONNX Runtime's offline tools, NumPy's
#                                                 f2py and distutils, and the debug symbols some wheels ship
#                                                 (needs strip, from binutils)
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

slim() {
    prefix=$1
    command -v strip >/dev/null 2>&1 || { echo "install.sh: slim needs strip (apt-get install binutils)" >&2; exit 1; }
    site=$(echo "$prefix"/lib/python3*/site-packages)
    [ -d "$site" ] || { echo "install.sh: no virtualenv at $prefix" >&2; exit 1; }
    # nothing imports these at run time: test suites (numpy's alone is 14 MB), ONNX Runtime's model
    # converters and quantiser, NumPy's Fortran wrapper generator
    find "$site" -depth -type d -name tests -exec rm -rf {} +
    rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
        "$site/numpy/f2py" "$site/numpy/distutils"
    # debug sections only (uvloop's extension is 12 MB of them), each library stripped into a copy that
    # replaces it only when it still loads: strip breaks some libraries that auditwheel patched (NumPy's
    # OpenBLAS then fails with "ELF load command address/offset not page-aligned")
    "$prefix/bin/python" - "$site" <<'PY'
import ctypes, os, subprocess, sys
from pathlib import Path

for lib in sorted(Path(sys.argv[1]).rglob("*.so*")):
    if not lib.is_file() or lib.is_symlink():
        continue
    copy = lib.with_name(lib.name + ".stripped")
    done = subprocess.run(["strip", "--strip-debug", "-o", str(copy), str(lib)], capture_output=True)
    try:
        if done.returncode == 0 and copy.stat().st_size < lib.stat().st_size:
            ctypes.CDLL(str(copy))
            os.replace(copy, lib)
    except OSError:
        pass
    finally:
        copy.unlink(missing_ok=True)
PY
    if ! "$prefix/bin/python" -c "import numpy, onnxruntime, PIL.Image, defectlens.inference.predictor" 2>&1; then
        echo "install.sh: the virtualenv at $prefix no longer imports after slim" >&2
        exit 1
    fi
}

case "${1:-}" in
    wheel) shift; [ $# -eq 2 ] || { echo "usage: install.sh wheel SRC OUTDIR" >&2; exit 2; }; wheel "$@" ;;
    venv) shift; [ $# -ge 2 ] || { echo "usage: install.sh venv WHEEL PREFIX [EXTRAS]" >&2; exit 2; }; venv "$@" ;;
    slim) shift; [ $# -eq 1 ] || { echo "usage: install.sh slim PREFIX" >&2; exit 2; }; slim "$@" ;;
    *) echo "usage: install.sh wheel SRC OUTDIR | venv WHEEL PREFIX [EXTRAS] | slim PREFIX" >&2; exit 2 ;;
esac
