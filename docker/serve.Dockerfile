# The serving image: TorchServe (Java 17) with segflow's handler, archive checks and model code.
# Build from the repository root:
#   docker build -f docker/serve.Dockerfile -t ghcr.io/segflow/segflow-serve:0.1.0 .
# The install step is scripts/install.sh, the same command `make` runs for .venv. The Helm chart
# gives the container its command (TorchServe with the chart's config.properties).
FROM python:3.11.7-slim-bookworm

# Slim images drop man pages, and the JRE's postinst fails without their folder.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 segflow \
    && install -d -o segflow -g segflow /opt/segflow

WORKDIR /opt/segflow
COPY --chown=1000:1000 . .

USER 1000:1000
RUN python -m venv .venv && scripts/install.sh .venv/bin/python train,serve
ENV PATH=/opt/segflow/.venv/bin:$PATH

# inference, management, metrics
EXPOSE 8080 8081 8082
