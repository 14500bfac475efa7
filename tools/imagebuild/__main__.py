"""python -m imagebuild build|tag: segflow's images (`make images`, `make image-tag`)."""

from __future__ import annotations

import argparse
import sys
import time

from imagebuild import project
from imagebuild.build import build
from imagebuild.errors import ImageBuildError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagebuild", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="record the tag (as `tag --write`), then build what the cache lacks")
    build_cmd.add_argument("--only", action="append", choices=sorted(project.images()), help="this image only")
    build_cmd.add_argument("--no-write", action="store_true",
                           help="build at the tag the inputs give without recording it (make test: a stale "
                                "record must fail its test, not be rewritten)")
    tag_cmd = commands.add_parser("tag", help="print the tag the inputs give")
    tag_cmd.add_argument("--write", action="store_true", help="record it in components/images.py and every copy")
    args = parser.parse_args(argv)
    try:
        return _build(args.only, record=not args.no_write) if args.command == "build" else _tag(args.write)
    except ImageBuildError as exc:
        print(f"imagebuild: {exc}", file=sys.stderr)
        return 1


def _tag(write: bool) -> int:
    tag = project.tag()
    if write:
        changed = project.write_tag(tag)
        print(f"{tag}: " + (f"rewrote {', '.join(changed)}" if changed else "every copy already names it"))
    else:
        print(tag)
        if stale := project.stale(tag):
            print(f"not recorded yet in {', '.join(stale)}: run `make image-tag`", file=sys.stderr)
    return 0


def _build(only: list[str] | None, record: bool) -> int:
    started = time.monotonic()
    if record:
        _tag(write=True)
    tag = project.tag()
    for name, spec in project.images().items():
        if only and name not in only:
            continue
        image = build(spec, tag)
        how = f"built in {image.seconds:.0f} s" if image.built else "cached"
        print(f"{image.reference}: {image.size / 1e9:.2f} GB, {how}; archive {image.archive} "
              f"({image.archive.stat().st_size / 1e9:.2f} GB)")
    print(f"images ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
