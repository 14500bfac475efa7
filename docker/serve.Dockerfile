# The serving image: TorchServe (Java 17) with segflow's handler, archive checks and model code (the
# `serve` extra only: no Ray, no search stack, no kfp), and nginx + envsubst for the chart's gateway.
# `make images` builds it (tools/imagebuild) and supplies BASE, a Debian bookworm root filesystem
# made with mmdebstrap with python3, python3-venv, ca-certificates, openjdk-17-jre-headless,
# nginx-light and gettext-base (the list is in tools/imagebuild/project.py).
# The install step is scripts/install.sh, the same command `make` runs for .venv. The Helm chart
# gives each container its command (TorchServe with the chart's config.properties, the gateway's nginx).
ARG BASE
FROM ${BASE}

RUN useradd --uid 1000 --user-group --create-home segflow
WORKDIR /opt/segflow

# The dependencies first, in a layer that source changes do not invalidate: with empty package
# folders and an empty README (pyproject.toml's `readme`; the real one is not sent) the install
# brings every requirement; the second install below only adds segflow itself.
# Installed as root (the code stays read-only to the user that runs it); pip's cache is mounted by
# the build, never stored in a layer.
COPY pyproject.toml setup.py constraints.txt ./
COPY scripts/ scripts/
RUN mkdir segflow components pipelines serving configs && touch README.md \
    && python3 -m venv .venv \
    && scripts/install.sh .venv/bin/python serve

COPY . .
RUN scripts/install.sh .venv/bin/python serve
ENV PATH=/opt/segflow/.venv/bin:$PATH

# Numeric, so a pod's runAsNonRoot can check it.
USER 1000:1000
# inference, management, metrics
EXPOSE 8080 8081 8082
