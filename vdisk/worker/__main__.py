"""`python -m vdisk.worker ROLE`: run one worker role."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    role = argv[0] if argv else ""
    if role == "importer":
        from .importer import main as run
        return run()
    if role == "uploadserver":
        from .uploadserver import main as serve
        return serve()
    print(f"unknown worker role {role!r}: expected importer or uploadserver", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
