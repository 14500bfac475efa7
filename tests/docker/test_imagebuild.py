"""tools/imagebuild: what a build sends, the tags it derives, its cache, and its errors.

The podman tests build tiny images FROM scratch (no base to fetch) in a cache of their own; they
run where podman and runc are installed and the tests run as root, and skip saying why elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagebuild import Base, ImageBuildError, ImageSpec, build, context_files, inputs_tag
from imagebuild.build import Image
from imagebuild.debian import ensure_base
from imagebuild.podman import Podman
from support.real import unavailable

CONTAINERFILE = "ARG BASE\nFROM ${BASE}\nCOPY hello.txt /hello.txt\n"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _spec(context: Path, containerfile: str = CONTAINERFILE, **changes) -> ImageSpec:
    (context / "Containerfile").write_text(containerfile)
    return ImageSpec(**{"name": "hello", "repository": "localhost/imagebuild-test/hello", "version": "1.0",
                        "containerfile": context / "Containerfile", "context": context, "bases": {"BASE": None},
                        **changes})


def test_the_ignore_file_is_read_as_podman_reads_it(tmp_path):
    """An allowlist with a folder re-included and caches dropped at any depth (checked against podman 4.3)."""
    _tree(tmp_path, {".dockerignore": "*\n!segflow\n!pipelines/\n**/__pycache__\npipelines/*.yaml\n",
                     "segflow/a.py": "", "segflow/models/b.py": "", "segflow/models/__pycache__/b.pyc": "",
                     "segflow/__pycache__/a.pyc": "", "other/o.txt": "", "top.txt": "",
                     "pipelines/x.py": "", "pipelines/x.yaml": ""})
    assert context_files(tmp_path) == ["pipelines/x.py", "segflow/a.py", "segflow/models/b.py"]


def test_without_an_ignore_file_everything_is_sent(tmp_path):
    _tree(tmp_path, {"a": "", "b/c": ""})
    assert context_files(tmp_path) == ["a", "b/c"]


def test_the_tag_follows_what_is_sent_and_nothing_else(tmp_path):
    context = _tree(tmp_path, {".dockerignore": "ignored.txt\n", "hello.txt": "hi", "ignored.txt": "",
                               "generated.py": "TAG = 1"})
    spec = _spec(context, exclude=("generated.py",))
    tag = inputs_tag([spec], "1.0")
    assert tag.startswith("1.0-") and len(tag) == len("1.0-") + 12
    (context / "ignored.txt").write_text("changed")
    (context / "generated.py").write_text("TAG = 2")
    assert inputs_tag([spec], "1.0") == tag  # ignored, or recorded the tag: not an input
    (context / "hello.txt").chmod(0o755)
    assert inputs_tag([spec], "1.0") != tag  # the executable bit reaches the image
    (context / "hello.txt").chmod(0o644)
    assert inputs_tag([spec], "1.0") == tag
    (context / "hello.txt").write_text("hello")
    assert inputs_tag([spec], "1.0") != tag


def test_the_tag_follows_the_containerfile_and_the_bases(tmp_path):
    spec = _spec(_tree(tmp_path, {"hello.txt": "hi"}))
    tag = inputs_tag([spec], "1.0")
    assert inputs_tag([_spec(spec.context, CONTAINERFILE + "USER 1000\n")], "1.0") != tag
    with_base = _spec(spec.context, bases={"BASE": Base(packages=("ca-certificates",))})
    assert inputs_tag([with_base], "1.0") != tag


def test_the_same_tree_gives_the_same_tag_wherever_it_is(tmp_path):
    one = _spec(_tree(tmp_path / "one", {"hello.txt": "hi"}))
    two = _spec(_tree(tmp_path / "elsewhere" / "two", {"hello.txt": "hi"}))
    assert inputs_tag([one], "1.0") == inputs_tag([two], "1.0")


def test_a_base_is_its_definition():
    assert Base(packages=("a", "b")).key == Base(packages=("b", "a")).key  # the order of the list does not matter
    assert Base(packages=("a",)).key != Base(packages=("a", "b")).key
    assert Base(packages=("a",)).key != Base(packages=("a",), suite="trixie").key
    assert Base().reference.startswith("localhost/imagebuild-base:")


def test_a_bad_spec_is_refused_with_its_name(tmp_path):
    with pytest.raises(ImageBuildError, match="image name 'Hello World'"):
        _spec(tmp_path, name="Hello World")
    with pytest.raises(ImageBuildError, match=r"\['BASE'\] are both bases and build arguments"):
        _spec(tmp_path, build_args={"BASE": "x"})


def test_a_missing_tool_names_the_apt_get_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageBuildError, match=r"podman, runc not found: install with `apt-get install -y podman runc`"):
        Podman(tmp_path / "podman")


def test_an_unreachable_mirror_is_named(tmp_path, closed_port):
    if shutil.which("mmdebstrap") is None:
        unavailable("no mmdebstrap (apt-get install -y mmdebstrap)")

    class NoImages:
        def exists(self, reference):
            return False

    base = Base(packages=("python3",), mirror=f"http://127.0.0.1:{closed_port}/debian")
    with pytest.raises(ImageBuildError, match=rf"Debian mirror http://127.0.0.1:{closed_port}/debian is unreachable"):
        ensure_base(base, NoImages(), tmp_path)


def test_a_built_tag_is_found_in_the_cache_without_podman(tmp_path, monkeypatch):
    spec = _spec(_tree(tmp_path / "context", {"hello.txt": "hi"}))
    tag = inputs_tag([spec], spec.version)
    archive = tmp_path / "cache" / "archives" / "hello" / f"{tag}.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    archive.with_suffix(".json").write_text(json.dumps({"size": 123}))
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman to start
    image = build(spec, cache=tmp_path / "cache")
    assert image == Image(f"{spec.repository}:{tag}", archive, 123, False, image.seconds)


@pytest.fixture
def podman_cache(tmp_path):
    """An image cache of the test's own; podman's overlay storage leaves its folder mounted, undone here."""
    if os.geteuid() != 0 or not (shutil.which("podman") and shutil.which("runc")):
        unavailable("needs root with podman and runc (apt-get install -y podman runc)")
    cache = tmp_path / "cache"
    yield cache
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{cache}/")), key=len, reverse=True):
        subprocess.run(["umount", mount], check=False)


@pytest.mark.slow
def test_build_saves_a_loadable_archive_and_keeps_one_tag(tmp_path, podman_cache):
    cache = podman_cache
    spec = _spec(_tree(tmp_path / "context", {"hello.txt": "hi"}))
    first = build(spec, cache=cache)
    assert first.built and first.size > 0 and first.reference.startswith("localhost/imagebuild-test/hello:1.0-")
    with tarfile.open(first.archive) as archive:  # docker-archive: the name survives `ctr images import`
        manifest = json.load(archive.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [first.reference]
    assert build(spec, cache=cache).built is False
    (spec.context / "hello.txt").write_text("hello")
    second = build(spec, cache=cache)
    assert second.reference != first.reference and not first.archive.exists()
    assert Podman(cache / "podman").tags(spec.repository) == [second.reference]


@pytest.mark.slow
def test_a_failed_build_shows_the_end_of_its_log(tmp_path, podman_cache):
    spec = _spec(_tree(tmp_path / "context", {"hello.txt": "hi"}), CONTAINERFILE + "RUN no-such-command\n")
    with pytest.raises(ImageBuildError, match=r"(?s)`podman build` failed.*logs/hello-1\.0-\w+\.log.*no-such-command"):
        build(spec, cache=podman_cache)
