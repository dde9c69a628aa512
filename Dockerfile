# hayaku on Ray's official image, with the offline default models prepared at build time: the image
# deploy/kuberay/rayservice.yaml runs (README, "Docker image").
#
#   docker build -t hayaku:latest .
#   GPU: docker build --build-arg RAY_FLAVOR=gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#          --build-arg TORCH=torch==2.13.0 -t hayaku:gpu .   (then name CUDA backends in the YAML: configs/cuda.yaml)
#
# RAY_VERSION and the Python of the tag (py311) are checked against the manifest's rayVersion and
# pyproject.toml by tests/unit/test_dockerfile.py; TORCH against scripts/setup.sh's default.
ARG RAY_VERSION=2.60.0
ARG RAY_FLAVOR=cpu
FROM rayproject/ray:${RAY_VERSION}-py311-${RAY_FLAVOR}

ARG RAY_VERSION
# A bare torch requirement pulls the multi-GB CUDA build: install the CPU one first, as scripts/setup.sh does.
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG HAYAKU_EXTRAS=cpu,models

# Debian/Ubuntu's espeak-ng for the espeak backend, as scripts/setup.sh installs it.
USER root
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
USER ray

ENV HAYAKU_HOME=/home/ray/hayaku-models \
    RAY_USAGE_STATS_ENABLED=0
WORKDIR /home/ray/hayaku
COPY --chown=ray:users . .
# ray[serve] pinned to the image's own Ray, so that installing hayaku never changes it.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH}" \
    && pip install --no-cache-dir ".[${HAYAKU_EXTRAS}]" "ray[serve]==${RAY_VERSION}" \
    && hayaku models prepare \
    && hayaku backends
