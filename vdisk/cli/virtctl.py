"""`virtctl`: KubeVirt's command-line tool, the commands vdisk implements, with virtctl's names and flags."""

from __future__ import annotations

import argparse
import sys

from . import imageupload


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="virtctl", description="virtctl controls virtual machine related operations "
                                "on vdisk (a KubeVirt-compatible stack).")
    imageupload.add_global_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    up = sub.add_parser("image-upload", help="Upload a VM image to a DataVolume/PersistentVolumeClaim.",
                        description="Upload a VM image to a DataVolume/PersistentVolumeClaim.")
    imageupload.add_arguments(up)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "image-upload":
        return imageupload.run(args)
    p.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
