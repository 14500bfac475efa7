"""What a build sends (its context after .dockerignore) and the tag derived from everything it is built from.

The ignore file is read as Docker and podman read it: patterns in Go's filepath.Match syntax
plus `**`, a leading `!` re-includes, the last matching pattern wins, and a pattern that matches
a folder matches everything under it. The tag's digest covers each sent file (path, executable
bit, content), each Containerfile and each base definition, so the same inputs always give the
same tag and any change to them gives a new one.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from imagebuild.spec import ImageSpec

DIGEST_CHARS = 12
IGNORE_FILES = (".containerignore", ".dockerignore")  # podman reads the first that exists


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's translation of one ignore pattern (moby/patternmatcher) into a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1:i + 2] == "*":
            i += 2
            if pattern[i:i + 1] == "/":
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch in ".+()|{}$^":
            out += "\\" + ch
        else:
            out += ch
        i += 1
    return re.compile(f"^{out}$")


def _patterns(context: Path) -> list[tuple[re.Pattern, bool, str]]:
    """(regex, re-includes, cleaned pattern) per pattern of the context's ignore file, in order."""
    found = next((context / name for name in IGNORE_FILES if (context / name).is_file()), None)
    patterns = []
    for line in found.read_text().splitlines() if found else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        cleaned = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((_pattern_regex(cleaned), include, cleaned))
    return patterns


def _ignored(path: str, patterns: list[tuple[re.Pattern, bool, str]]) -> bool:
    parents = [path[:i] for i, ch in enumerate(path) if ch == "/"]
    ignored = False
    for regex, include, _ in patterns:
        if regex.match(path) or any(regex.match(parent) for parent in parents):
            ignored = not include
    return ignored


def _skipped(folder: str, patterns: list[tuple[re.Pattern, bool, str]]) -> bool:
    """An ignored folder is not walked unless a `!` pattern names something inside it (Docker's rule)."""
    return _ignored(folder, patterns) and not any(
        include and (text + "/").startswith(folder + "/") for _, include, text in patterns)


def context_files(context: Path) -> list[str]:
    """The files a build of `context` sends, as sorted paths relative to it (with /)."""
    patterns = _patterns(context)
    sent = []
    for folder, dirs, files in os.walk(context):
        rel = Path(folder).relative_to(context).as_posix()
        prefix = "" if rel == "." else rel + "/"
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]  # sent as links, not walked
        dirs[:] = sorted(d for d in dirs if d not in links and not _skipped(prefix + d, patterns))
        sent += [prefix + f for f in files + links if not _ignored(prefix + f, patterns)]
    return sorted(sent)


def _file_digest(path: Path) -> str:
    """Content and executable bit (the rest of the mode depends on the checkout's umask)."""
    if path.is_symlink():
        return "link:" + os.readlink(path)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return ("x:" if path.stat().st_mode & 0o111 else "") + digest.hexdigest()


def _context_digest(context: Path, exclude: Iterable[str]) -> str:
    excluded = set(exclude)
    lines = [f"{rel} {_file_digest(context / rel)}" for rel in context_files(context) if rel not in excluded]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def inputs_digest(specs: Iterable[ImageSpec]) -> str:
    """sha256 over every input of the given images (a context they share counted once).

    Only relative paths enter it: the same tree gives the same tag wherever it is checked out.
    """
    contexts, entries = {}, set()
    for spec in specs:
        key = (spec.context.resolve(), tuple(sorted(spec.exclude)))
        if key not in contexts:
            contexts[key] = _context_digest(spec.context, spec.exclude)
        entries.add(f"context {contexts[key]}")
        entries.add(f"containerfile {spec.name} {_file_digest(spec.containerfile)}")
        for arg, base in sorted(spec.bases.items()):
            entries.add(f"base {spec.name} {arg} {base.key if base else 'scratch'}")
        for arg, value in sorted(spec.build_args.items()):
            entries.add(f"arg {spec.name} {arg}={value}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def inputs_tag(specs: Iterable[ImageSpec], version: str) -> str:
    """VERSION-DIGEST12: one tag for all of `specs`, derived from their inputs."""
    return f"{version}-{inputs_digest(specs)[:DIGEST_CHARS]}"
