"""Run every benchmark in tests/bench and print each report (`make bench`)."""

from __future__ import annotations

import sys

from tests.bench import apiserver, importer, provisioning, upload

BENCHES = {"apiserver": apiserver.main, "provisioning": provisioning.main, "importer": importer.main,
           "upload": upload.main}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHES)
    for name in names:
        print(f"== {name}", flush=True)
        BENCHES[name]([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
