# The image KFP components and KubeRay RayJobs run: segflow with every extra on Ray's GPU image.
# Build from the repository root:
#   docker build -f docker/segflow.Dockerfile -t ghcr.io/segflow/segflow:0.1.0 .
# The install step is scripts/install.sh, the same command `make` runs for .venv.
FROM rayproject/ray:2.60.0-py311-gpu

# swig and a C++ compiler build pyrfr (SMAC's random forest) from its sdist, as on a developer's Debian.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends swig build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o 1000 -g 100 /opt/segflow

WORKDIR /opt/segflow
COPY --chown=1000:100 . .

# Ray's image runs as `ray` (uid 1000, group `users`: 100) with its Python in /home/ray/anaconda3,
# which that user owns; numeric, so a pod's runAsNonRoot can check it.
USER 1000:100
RUN scripts/install.sh python all
