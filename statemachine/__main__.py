"""Command line: `python -m statemachine COMMAND`: demo, emulator, audit, keygen, report,
diagram, timeline, bench, table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Sequence

from .core import table


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


def run_diagram(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import diagram

    root = Path.cwd()
    if args.from_log:
        try:
            path = diagram.from_log(Path(args.from_log), args.session)
        except (OSError, ValueError) as exc:
            print(f"cannot read the session from {args.from_log}: {exc}", file=sys.stderr)
            return 2
        prefix = Path(args.output or f"diagrams/session-{path.session}")
        has_dot = shutil.which("dot") is not None
        if args.path_only:
            files = diagram.path_outputs(prefix.parent, path, stem=prefix.name)
        else:
            files = diagram.outputs(prefix.parent, path, stem=prefix.name, with_svg=has_dot)
        for target, content in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            print(f"wrote {target}")
        if not has_dot and not args.path_only:
            print("no SVG: Graphviz 'dot' is not installed (apt-get install graphviz); "
                  "--path-only draws its SVG without it")
        return 0
    if args.check:
        stale = diagram.check(root)
        for name in stale:
            print(f"stale: {name}")
        if not stale:
            print("diagrams are current")
        if shutil.which("dot") is None:
            print("note: Graphviz 'dot' is not installed; the SVG was not checked")
        return 1 if stale else 0
    try:
        written = diagram.write(root)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    for target in written:
        print(f"wrote {target}")
    return 0


def run_timeline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import timeline

    try:
        data = timeline.read(Path(args.log), args.session)
    except (OSError, ValueError) as exc:
        print(f"cannot read the session from {args.log}: {exc}", file=sys.stderr)
        return 2
    timeline.render(data, Path(args.output))
    print(f"wrote {args.output}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import report

    try:
        report.write(Path(args.log), Path(args.output), args.session,
                     whole_table=args.whole_table)
    except (OSError, ValueError) as exc:
        print(f"cannot report on {args.log}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


def run_keyed(args: argparse.Namespace) -> int:
    """The commands that read or write audit keys."""
    from .audit import signing

    if args.command == "keygen":
        private, public, key_id = signing.keygen(args.dir)
        print(f"key id {key_id}\n  private (keep secret, mode 0600): {private}\n"
              f"  public (give to auditors): {public}")
        return 0
    if args.command == "audit":
        from .audit import check as auditcheck

        report = auditcheck.check(args.logs, args.public_key)
        print(auditcheck.as_json(report) if args.json else auditcheck.render(report))
        return report.exit_code
    from . import demo as demo_module

    if args.signing_key:
        signing_key: signing.SigningKey | None = signing.SigningKey.from_file(args.signing_key)
    elif os.environ.get(signing.ENV_VAR):
        signing_key = signing.SigningKey.from_env()
    else:
        signing_key = None
    key = args.api_key or demo_module.api_key_from_env()
    return demo_module.main(args.log, key, args.model, signing_key)


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
    demo.add_argument("--signing-key", metavar="PATH",
                      help="sign the audit log with this Ed25519 private key (default: the PEM "
                           "in $STATEMACHINE_AUDIT_SIGNING_KEY, if set)")
    audit = sub.add_parser("audit", help="check audit logs and summarize each session")
    audit.add_argument("logs", nargs="+", metavar="LOG")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.add_argument("--public-key", action="append", metavar="PATH",
                       help="verify the signed checkpoints with this public key (repeat for "
                            "rotated keys)")
    keygen = sub.add_parser("keygen", help="write a new audit signing key pair into DIR")
    keygen.add_argument("dir", metavar="DIR")
    diagram = sub.add_parser("diagram", help="render the lifecycle diagrams from the table")
    diagram.add_argument("--check", action="store_true",
                         help="exit 1 if the committed diagrams differ from the table")
    diagram.add_argument("--from-log", metavar="LOG", help="highlight one session's path")
    diagram.add_argument("--session", help="the session to show (default: the first)")
    diagram.add_argument("--path-only", action="store_true",
                         help="with --from-log: only the states and edges the session took")
    diagram.add_argument("-o", "--output", metavar="PREFIX",
                         help="with --from-log: write PREFIX.mmd/.dot/.svg "
                              "(default diagrams/session-ID)")
    page = sub.add_parser("report", help="one session on one self-contained HTML page")
    page.add_argument("log", metavar="LOG")
    page.add_argument("--session", help="the session to show (default: the first)")
    page.add_argument("--whole-table", action="store_true",
                      help="draw the whole transition table with the path on it")
    page.add_argument("-o", "--output", required=True, metavar="FILE.html")
    timeline = sub.add_parser("timeline", help="draw one session over time (SVG)")
    timeline.add_argument("log", metavar="LOG")
    timeline.add_argument("--session", help="the session to draw (default: the first)")
    timeline.add_argument("-o", "--output", required=True, metavar="FILE.svg")
    bench = sub.add_parser("bench", help="run the benchmarks (not part of the tests)")
    bench.add_argument("--quick", action="store_true", help="a smaller run, about a minute")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--peers", action="store_true",
                       help="the voice frameworks with and without instrument() (needs .venv-fw)")
    args = parser.parse_args(argv)
    if args.command == "bench" and args.peers:
        from .bench import peers

        return peers.main(args.quick, args.json)
    if args.command == "bench":
        from . import bench as bench_module

        return bench_module.main(args.quick, args.json)
    if args.command == "diagram":
        return run_diagram(args)
    if args.command == "timeline":
        return run_timeline(args)
    if args.command == "report":
        return run_report(args)
    if args.command in ("audit", "keygen", "demo"):
        from .errors import SigningKeyError

        try:
            return run_keyed(args)
        except SigningKeyError as exc:
            print(exc, file=sys.stderr)
            return 2
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
