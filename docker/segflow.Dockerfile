# The image every pipeline step and the Ray head and workers of a RayJob run: segflow with every extra.
# torch is PyPI's CUDA build: it runs on CPU nodes, and on GPU nodes with the node's driver.
# `make images` builds it (tools/imagebuild) and supplies the bases, Debian bookworm root filesystems
# made with mmdebstrap (their package lists are in tools/imagebuild/project.py):
#   BASE        python3, python3-venv, ca-certificates, wget (KubeRay's probes run it)
#   BUILD_BASE  the same Python with python3-dev, swig and g++, for the wheel stage only
# The install step is scripts/install.sh, the same command `make` runs for .venv.
ARG BASE
ARG BUILD_BASE

# Two requirements come as sdists with native code: pyrfr (SMAC's random forest: swig and C++) and
# netifaces (hpbandster's). Their wheels are made in this stage, so no compiler reaches the image.
FROM ${BUILD_BASE} AS wheels
COPY constraints.txt /tmp/constraints.txt
RUN python3 -m venv /tmp/venv \
    && /tmp/venv/bin/python -m pip wheel --use-pep517 --no-deps -c /tmp/constraints.txt -w /wheels pyrfr netifaces

FROM ${BASE}
# uid 1000 has a home (Ray writes ~/.ray, NNI ~/nni-experiments). KubeRay starts Ray through
# `bash -l`, whose /etc/profile resets PATH: profile.d puts the venv back in front.
RUN useradd --uid 1000 --user-group --create-home segflow \
    && echo "PATH=/opt/segflow/.venv/bin:\$PATH" > /etc/profile.d/segflow.sh
WORKDIR /opt/segflow

# The dependencies first, in layers that source changes do not invalidate: with empty package
# folders and an empty README (pyproject.toml's `readme`; the real one is not sent) the installs
# bring every requirement; the last install below only adds segflow itself. Two layers, `serve`
# (torch and its CUDA libraries: 5.1 GB) then the rest of `all` (1.3 GB), because committing a
# layer takes about twice its size in scratch disk.
# Installed as root (the code stays read-only to the user that runs it); pip's cache is mounted by
# the build, never stored in a layer.
# The wheels are copied rather than mounted: a mount's content is not part of podman's layer cache
# key, so a changed wheel stage would not rebuild these layers (they weigh 5 MB).
COPY pyproject.toml setup.py constraints.txt ./
COPY scripts/ scripts/
COPY --from=wheels /wheels /opt/wheels
RUN mkdir segflow components pipelines serving configs && touch README.md \
    && python3 -m venv .venv \
    && scripts/install.sh .venv/bin/python serve
RUN PIP_FIND_LINKS=/opt/wheels scripts/install.sh .venv/bin/python all

COPY . .
RUN scripts/install.sh .venv/bin/python all
ENV PATH=/opt/segflow/.venv/bin:$PATH

# Numeric, so a pod's runAsNonRoot can check it.
USER 1000:1000
