"""Command line: `python -m statemachine {table,emulator,demo}`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import table


def print_table() -> int:
    """Print the transition table, as the engine reads it."""
    width = max(len(row.trigger.value) for row in table.TRANSITIONS)
    print(f"initial: {table.INITIAL.value}   final: {', '.join(s.value for s in table.FINAL)}")
    for row in table.TRANSITIONS:
        guards = " & ".join(g.value for g in row.guards) or "-"
        sources = ",".join(s.value for s in row.sources)
        print(f"{row.trigger.value:<{width}}  {sources} -> {row.dest.value}  [{guards}]")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m statemachine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="print the lifecycle transition table")
    args = parser.parse_args(argv)
    if args.command == "table":
        return print_table()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
