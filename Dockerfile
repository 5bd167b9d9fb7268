# The inspection service, and the line station, from the wheel only: no torch, no compilers, no build cache.
#
#   docker build -t defectlens:0.3.0 .
#   docker run -d -p 8000:8000 -v "$PWD/models:/models:ro" -v defectlens-log:/data \
#       -e DEFECTLENS_API_KEY -e DEFECTLENS_ALLOWED_HOSTS=inspect.plant.local defectlens:0.3.0
#   docker run ... defectlens:0.3.0 defectlens line --config /config/station.yaml
#
# The install steps are deploy/install.sh, which tests/integration/test_container_recipe.py also runs; that
# test starts this file's CMD with its ENV and polls its HEALTHCHECK, so keep them exec-form JSON.
# Debian slim, not Alpine: onnxruntime has no musl wheels.

FROM python:3.11-slim-bookworm AS builder
# strip (binutils) for install.sh slim; only in the builder, nothing of it reaches the image
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE CHANGELOG.md MANIFEST.in ./
COPY src ./src
COPY deploy/install.sh ./deploy/install.sh
RUN sh deploy/install.sh wheel /src /wheels \
    && sh deploy/install.sh venv /wheels/defectlens-*.whl /opt/venv serve,line
# What never runs out: test suites, ONNX Runtime's offline tools, debug sections
# (benchmarks/bench_ship.py runs this step too)
RUN sh deploy/install.sh slim /opt/venv

FROM python:3.11-slim-bookworm
# The same interpreter path as the builder's, so the virtualenv copied from it runs as is.
COPY --from=builder /opt/venv /opt/venv
RUN groupadd --system --gid 10001 defectlens \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin defectlens \
    && mkdir -p /models /data \
    && chown 10001:10001 /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEFECTLENS_MODEL=/models/model.dlens \
    DEFECTLENS_DB=/data/inspections.sqlite \
    DEFECTLENS_PORT=8000 \
    DEFECTLENS_ALLOWED_HOSTS=localhost \
    DEFECTLENS_LOG_DIR=/data/crash-logs
USER 10001:10001
WORKDIR /data
VOLUME ["/models", "/data"]
EXPOSE 8000
# Python, not curl (the slim image has none); /readyz answers any Host and needs no key.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DEFECTLENS_PORT', '8000') + '/readyz', timeout=4)"]
CMD ["defectlens", "serve", "--host", "0.0.0.0"]
