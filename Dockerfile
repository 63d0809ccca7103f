# syntax=docker/dockerfile:1
# One image for every deployable; the entrypoint is the `ibstream` CLI:
#   docker run IMAGE run producer|streams|execution|sink|api|agent0
#   docker run IMAGE topics ensure
# No Docker engine exists where this project's CI runs, so this file is never built there: tests/unit/test_dockerfile.py
# keeps it honest (stages, pins, user, entrypoint, healthcheck, lock file), and the layout below was verified by
# reproducing it with a venv outside Docker (see the comment on the editable install).

# Both stages use the same base: the venv's interpreter symlinks (/opt/venv/bin/python -> /usr/local/bin/python3.11)
# must resolve to the same Python in the final image. Pin by tag here; pin by digest too where the registry allows
# (`python:3.11.14-slim-bookworm@sha256:…`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SETUPTOOLS_VERSION=80.9.0
ARG WHEEL_VERSION=0.45.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Build tooling, pinned, only in this stage: setuptools builds ibapi (published as an sdist only; pure Python, no
# compiler) and the ibstream editable install. Both are removed again before the venv is copied.
RUN pip install "setuptools==${SETUPTOOLS_VERSION}" "wheel==${WHEEL_VERSION}"
# Dependencies first, in their own layer (cached while only the source changes): exactly the locked set
# (ops/lock regenerates it), --no-deps so nothing is resolved at build time, wheels only except ibapi.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-deps --no-build-isolation --only-binary=:all: --no-binary=ibapi -r /tmp/requirements.lock
# The source tree lives at /app. The code finds its Avro schemas at PROJECT_ROOT / "avro", where PROJECT_ROOT is the
# parent of the `ibstream` package (ibstream/config.py). A regular `pip install /app` would put the packages in
# site-packages, whose parent has no avro/, so the project is installed in editable mode instead: the packages stay
# in /app next to /app/avro, and the venv gets the `ibstream` console script, the dist-info and a path finder that
# points at /app. The final stage copies /opt/venv and /app to the same paths, so that finder stays valid.
# (Verified: `from ibstream.contracts.serde import SchemaStore; SchemaStore()` loads /app/avro/*.avsc from any cwd.)
# The root filesystem is read-only at run time, so bytecode is compiled here instead of on first import.
COPY pyproject.toml README.md /app/
COPY avro /app/avro
COPY ibstream /app/ibstream
COPY producers /app/producers
COPY streams /app/streams
COPY consumers /app/consumers
COPY api /app/api
COPY ibsim /app/ibsim
COPY tooling /app/tooling
RUN pip install --no-deps --no-build-isolation -e /app \
    && pip uninstall -y setuptools wheel \
    && pip check \
    && rm -rf /app/*.egg-info /app/build \
    && python -m compileall -q /app /opt/venv/lib/python3.11/site-packages \
    && python -c "from ibstream.contracts.serde import SchemaStore; SchemaStore()"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ibstream" \
      org.opencontainers.image.description="Kafka-based paper-trading pipeline for Interactive Brokers" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 ibstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ibstream \
    && mkdir -p /var/lib/ibstream \
    && chown 10001:10001 /var/lib/ibstream
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# Code and venv stay owned by root (the app user cannot modify them); state goes to /var/lib/ibstream (a volume in
# Kubernetes, which mounts the root filesystem read-only). IBSTREAM_HEALTH_PORT is the port the HEALTHCHECK probes:
# set it to the deployable's health port (producer 8092, execution 8094, api 8080, agent0 8093, …).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IBSTREAM_STATE_DIR=/var/lib/ibstream \
    IBSTREAM_HEALTH_PORT=8092
WORKDIR /app
USER 10001:10001
# urllib, so the image needs no curl; any non-2xx answer or a refused connection raises and marks it unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('IBSTREAM_HEALTH_PORT', '8092'), timeout=4)"]
ENTRYPOINT ["ibstream"]
CMD ["--help"]
