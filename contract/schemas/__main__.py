"""``python -m contract.schemas [--check]``: see contract/schemas/__init__.py."""
from __future__ import annotations

import argparse
import sys

from contract.schemas import DIRECTORY, drifted, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contract.schemas",
                                     description="Write (or --check) the JSON Schema files of the public messages.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs from the models")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(DIRECTORY)
        for target in stale:
            print(f"{target}: differs from contract/messages.py; run `python -m contract.schemas`", file=sys.stderr)
        return 1 if stale else 0
    for target in write(DIRECTORY):
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
