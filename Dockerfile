# syntax=docker/dockerfile:1
# One image for every deployable; the entrypoint is the `ibstream` CLI:
#   docker run IMAGE run producer|streams|execution|sink|api|agent0
#   docker run IMAGE topics ensure
# The image holds the ibstream wheel installed into a venv with exactly the locked dependencies, no source tree.
# CI builds it with podman and runs every deployable from it (tests/integration/test_image.py); the rules checked
# without an engine are in tests/unit/deploy/test_dockerfile.py.

# The base is a build argument: the official slim image by default, or any Debian-like image with python3.11,
# python3-venv and ca-certificates (CI builds one with mmdebstrap where the registry is unreachable). Both stages use
# the same base: the venv's interpreter symlinks must resolve to the same Python in the final image. Pin by tag here;
# pin by digest too where the registry allows (`python:3.11.14-slim-bookworm@sha256:…`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SETUPTOOLS_VERSION=80.9.0
ARG WHEEL_VERSION=0.45.1
# A directory of the locked wheels mounted into the build (podman build -v DIR:/wheelhouse:ro --build-arg
# WHEELHOUSE=/wheelhouse), so CI downloads them once for the clean-venv test and the image; empty: the index.
ARG WHEELHOUSE=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, in their own layer (cached while only the source changes): exactly the locked set (ops/lock
# regenerates it), each file checked against its sha256, --no-deps so nothing is resolved at build time, wheels only.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-deps --require-hashes --only-binary=:all: \
        ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r /tmp/requirements.lock
# The wheel is built in a venv of its own with pinned build tools, which never reach the runtime venv.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install "setuptools==${SETUPTOOLS_VERSION}" "wheel==${WHEEL_VERSION}"
# The wheel's inputs: the packages, their data (ibstream/contracts/avro links to /src/avro) and the metadata files.
COPY pyproject.toml README.md /src/
COPY avro /src/avro
COPY ibstream /src/ibstream
COPY producers /src/producers
COPY streams /src/streams
COPY consumers /src/consumers
COPY api /src/api
COPY ibsim /src/ibsim
COPY tooling /src/tooling
# The root filesystem is read-only at run time, so bytecode is compiled here instead of on first import. The check
# runs from / so nothing but the installed package can answer the import.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist /src \
    && pip install --no-deps /tmp/dist/ibstream-*.whl \
    && pip uninstall -y setuptools wheel \
    && pip check \
    && python -m compileall -q /opt/venv/lib/python3.11/site-packages \
    && cd / && python -c "from ibstream.contracts.serde import SchemaStore; SchemaStore()"

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
# The venv stays owned by root (the app user cannot modify it); state goes to /var/lib/ibstream (a volume in
# Kubernetes, which mounts the root filesystem read-only). IBSTREAM_HEALTH_PORT is the port the HEALTHCHECK probes:
# set it to the deployable's health port (producer 8092, execution 8094, api 8080, agent0 8093, …).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IBSTREAM_STATE_DIR=/var/lib/ibstream \
    IBSTREAM_HEALTH_PORT=8092
WORKDIR /var/lib/ibstream
USER 10001:10001
# urllib, so the image needs no curl; any non-2xx answer or a refused connection raises and marks it unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('IBSTREAM_HEALTH_PORT', '8092'), timeout=4)"]
ENTRYPOINT ["ibstream"]
CMD ["--help"]
