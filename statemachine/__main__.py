"""Command line: `python -m statemachine {demo,emulator,audit,table}`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def run_emulator(port: int, time_scale: float) -> None:
    """Serve the emulator until interrupted, after printing how to reach it."""
    from .emulator import EmulatorSettings, LiveEmulator

    async with LiveEmulator(EmulatorSettings(time_scale=time_scale), port=port) as emu:
        print("Live API emulator running. Point a google-genai client at it with:")
        print(f"  export GOOGLE_GEMINI_BASE_URL={emu.base_url}")
        print(f"  export SSL_CERT_FILE={emu.ca_file}")
        print(f"  export GOOGLE_API_KEY={emu.api_key}")
        print("and pass http_options=types.HttpOptions(async_client_args={'proxy': None}) "
              "if HTTPS_PROXY is set. Ctrl-C stops it.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m statemachine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="print the lifecycle transition table")
    emu = sub.add_parser("emulator", help="run the local Live API emulator")
    emu.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    emu.add_argument("--time-scale", type=float, default=1.0,
                     help="multiply every duration (0.01: a 10 min connection lasts 6 s)")
    demo = sub.add_parser("demo", help="run a complete session (emulator, or real with a key)")
    demo.add_argument("--log", help="where to write the JSON Lines audit log")
    demo.add_argument("--api-key", help="run against the real service (or set GEMINI_API_KEY)")
    demo.add_argument("--model", default="gemini-live-2.5-flash-preview")
    audit = sub.add_parser("audit", help="check audit logs and summarize each session")
    audit.add_argument("logs", nargs="+", metavar="LOG")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "audit":
        from . import auditcheck

        report = auditcheck.check(args.logs)
        print(auditcheck.as_json(report) if args.json else auditcheck.render(report))
        return report.exit_code
    if args.command == "demo":
        from . import demo as demo_module

        key = args.api_key or demo_module.api_key_from_env()
        return demo_module.main(args.log, key, args.model)
    if args.command == "table":
        return print_table()
    if args.command == "emulator":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_emulator(args.port, args.time_scale))
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
