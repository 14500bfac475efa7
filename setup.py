"""Package layout that pyproject.toml alone cannot express.

ARCHITECTURE.md keeps components/, pipelines/, serving/ and configs/ as top-level folders
but installs them under the `segflow` namespace (`segflow.components`, ...). This maps
each folder, and every package inside it, to its dotted name.
"""

from setuptools import find_packages, setup

MAPPED_FOLDERS = {
    "components": "segflow.components",
    "pipelines": "segflow.pipelines",
    "serving": "segflow.serving",
    "configs": "segflow.configs",
}


def _layout() -> tuple[list[str], dict[str, str]]:
    packages = find_packages(include=["segflow", "segflow.*"])
    package_dir = {"segflow": "segflow"}
    for folder, dotted in MAPPED_FOLDERS.items():
        for sub in [""] + [f".{p}" for p in find_packages(where=folder)]:
            packages.append(dotted + sub)
            package_dir[dotted + sub] = folder + sub.replace(".", "/")
    return packages, package_dir


packages, package_dir = _layout()
setup(packages=packages, package_dir=package_dir)
