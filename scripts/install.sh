#!/usr/bin/env bash
# Install segflow with the given extras into PYTHON's environment, every version pinned by constraints.txt,
# then check that torchvision loads its compiled operators (see constraints.in for why it may not).
#
# The one install step of the project: `make` runs it for .venv (extras all,dev), and
# docker/segflow.Dockerfile (all) and docker/serve.Dockerfile (serve) run it in their images,
# so every CI run exercises the images' install command too.
#
# usage: scripts/install.sh PYTHON EXTRAS     e.g. scripts/install.sh .venv/bin/python all,dev
set -euo pipefail
python=${1:?usage: scripts/install.sh PYTHON EXTRAS}
extras=${2:?usage: scripts/install.sh PYTHON EXTRAS}
cd "$(dirname "$0")/.."

"$python" -m pip --disable-pip-version-check install --quiet -c constraints.txt -e ".[$extras]"
"$python" -c "import torchvision.ops as o, torch; o.nms(torch.rand(2, 4), torch.rand(2), 0.5)" || {
  echo "torchvision cannot load its operators: torch is not PyPI's build (see constraints.in)" >&2
  exit 1
}
