"""`mediaimport-dev images build`: make the project's images and show their sizes."""

from __future__ import annotations

import argparse
import time

from mediaimport_dev import images


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="images_action", required=True)
    build = actions.add_parser(
        "build",
        help="build what is stale (content-hashed; a warm run only hashes), print each image",
    )
    build.add_argument(
        "--only", action="append", choices=images.ALL_IMAGES, metavar="IMAGE",
        help=f"build only this image (repeatable): {', '.join(images.ALL_IMAGES)}",
    )
    build.set_defaults(run=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    built = images.ensure_images(only=args.only)
    width = max(len(name) for name in built)
    print(f"{'IMAGE':<{width}}  {'SIZE':>9}  {'ID':<19}  ARCHIVE")
    for name, archive in built.items():
        print(
            f"{name:<{width}}  {images.format_size(archive.size):>9}  "
            f"{archive.image_id[:19]:<19}  {archive.archive}"
        )
    print(f"ready in {time.monotonic() - started:.1f} s")
    return 0
