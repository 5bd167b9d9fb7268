# The README's commands. Each sets up its own virtualenv (.venv) when missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test lint format bench bench-real bench-ship clean install sysdeps peers anomalib-peer mutation planted inspector-app

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,eval,serve,openvino,line,video,camera,postgres,ray,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/defectlens demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/hadolint Dockerfile

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_demo.py

bench-real: $(STAMP)
	$(BIN)/python benchmarks/run_real.py

# What a plant installs (issue 28): the wheel, the torch-free install and the container image's virtualenv
# (built with deploy/install.sh, as the Dockerfile does), their sizes and start-up to a first verdict.
bench-ship: $(STAMP)
	$(BIN)/python benchmarks/bench_ship.py

# Mutation testing of the modules that decide (benchmarks/bench_mutation.py; results in
# benchmarks/results/mutation.json). Slow (tens of minutes on 2 cores), so not part of make test.
# MODULES="decision auth" runs only those.
mutation: $(STAMP)
	$(BIN)/python benchmarks/bench_mutation.py $(if $(MODULES),--modules $(MODULES))

# The eleven one-line bugs of issue #34, planted one at a time in a copy of src/: each must fail a test
# (benchmarks/bench_planted.py; results in benchmarks/results/planted.json).
planted: $(STAMP)
	$(BIN)/python benchmarks/bench_planted.py

# The standalone QA Inspector (PyInstaller, packaging/inspector.spec): dist/defectlens-inspector/, a folder
# with its own Python, ONNX Runtime and Tk; no torch. On Windows: pyinstaller --noconfirm packaging\inspector.spec
inspector-app: $(STAMP)
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/inspector.spec

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache

# Debian tools for the browser (Chromium + Playwright) and desktop (Xvfb + xdotool) tests; CI runs it.
SYSDEPS := chromium chromium-driver xvfb xdotool mosquitto postgresql
sysdeps:
	@missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The benchmark-only peer (Ultralytics, AGPL-3.0) in its own virtualenv, never in .venv: see
# benchmarks/peers/README.md. CI builds it so the peer smoke test runs there.
PEERS_VENV ?= .venv-peers
$(PEERS_VENV)/bin/python: benchmarks/peers/requirements.txt
	$(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q -r benchmarks/peers/requirements.txt
	touch $@

# anomalib's PatchCore beside ours (issue #29), benchmark-only like the Ultralytics peer: its own
# virtualenv, never .venv, not part of install. benchmarks/run_anomaly.py --peer anomalib runs
# benchmarks/peers/anomalib_patchcore.py in it (see benchmarks/peers/README.md); `make peers` (CI) builds
# it too, so its smoke test runs there.
ANOMALIB_VENV ?= .venv-anomalib
ANOMALIB_PINS := torch==2.14.1 torchvision==0.29.1 anomalib==2.7.0 openvino==2026.4.1 onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0
$(ANOMALIB_VENV)/.installed: Makefile
	$(PY) -m venv $(ANOMALIB_VENV)
	$(ANOMALIB_VENV)/bin/pip install -q --upgrade pip
	$(ANOMALIB_VENV)/bin/pip install -q $(ANOMALIB_PINS)
	touch $@

anomalib-peer: $(ANOMALIB_VENV)/.installed

peers: $(PEERS_VENV)/bin/python $(ANOMALIB_VENV)/.installed
