"""Command line: `python -m statemachine COMMAND`: demo, emulator, audit, keygen, report,
diagram, timeline, bench, table."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .core import table
from .errors import LifecycleError, LocalMisuse, SettingsError
from .models import DEFAULT_MODEL

#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130
#: exit status when stdout was closed early (`... | head`): 128 + SIGPIPE, like other tools
PIPE_CLOSED = 141


def prog() -> str:
    """The name the user typed: the console script, or `python -m statemachine`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("gemini-live-statemachine") else "python -m statemachine"


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line (the command, what was wrong, where to look)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(message: str, status: int = 2) -> int:
    """One line on stderr, and the exit status to return."""
    print(f"{prog()}: error: {message}", file=sys.stderr)
    return status


def print_table() -> int:
    """Print the transition table, as the engine reads it."""
    width = max(len(row.trigger.value) for row in table.TRANSITIONS)
    print(f"initial: {table.INITIAL.value}   final: {', '.join(s.value for s in table.FINAL)}")
    for row in table.TRANSITIONS:
        guards = " & ".join(g.value for g in row.guards) or "-"
        sources = ",".join(s.value for s in row.sources)
        print(f"{row.trigger.value:<{width}}  {sources} -> {row.dest.value}  [{guards}]")
    return 0


async def run_emulator(port: int, time_scale: float) -> int:
    """Serve the emulator, after printing how to reach it, until Ctrl-C (exit 130) or SIGTERM
    (exit 0); either way it stops cleanly and removes its temporary CA file."""
    from .emulator import EmulatorSettings, LiveEmulator

    settings = EmulatorSettings(time_scale=time_scale)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    emu = LiveEmulator(settings, port=port)
    try:
        await emu.start()
    except OSError as exc:
        await emu.stop()
        if exc.errno == errno.EADDRINUSE:
            return fail(f"cannot listen on 127.0.0.1:{port}: the port is in use; choose "
                        "another --port, or leave it out for a free one")
        return fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    try:
        print("Live API emulator running. Point a google-genai client at it with:")
        print(f"  export GOOGLE_GEMINI_BASE_URL={emu.base_url}")
        print(f"  export SSL_CERT_FILE={emu.ca_file}")
        print(f"  export GOOGLE_API_KEY={emu.api_key}")
        print("and pass http_options=types.HttpOptions(async_client_args={'proxy': None}) "
              "if HTTPS_PROXY is set. Ctrl-C stops it.", flush=True)
        await stop.wait()
    finally:
        await emu.stop()
    if received and received[0] == signal.SIGINT:
        print(f"{prog()}: emulator interrupted, stopped", file=sys.stderr)
        return INTERRUPTED
    return 0


def run_diagram(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import diagram

    root = Path.cwd()
    if args.readme and (args.from_log or args.check or args.output):
        return fail("diagram --readme writes the project's own diagrams; it takes no other "
                    "option")
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
    if args.output:
        has_dot = shutil.which("dot") is not None
        prefix = Path(args.output)
        for target, content in diagram.outputs(
                prefix.parent, stem=prefix.name, with_svg=has_dot).items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            print(f"wrote {target}")
        return 0
    if not args.readme:
        print(diagram.mermaid(), end="")
        return 0
    try:
        written = diagram.write(root)
    except (FileNotFoundError, LocalMisuse) as exc:
        return fail(str(exc))
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

    if args.log and Path(args.log).exists() and not args.force:
        return fail(f"demo: {args.log} exists: pass --force to overwrite it, or choose "
                    "another --log")
    if args.signing_key:
        signing_key: signing.SigningKey | None = signing.SigningKey.from_file(args.signing_key)
    elif os.environ.get(signing.ENV_VAR):
        signing_key = signing.SigningKey.from_env()
    else:
        signing_key = None
    key = args.api_key or demo_module.api_key_from_env()
    try:
        return demo_module.main(args.log, key, args.model, signing_key)
    except OSError as exc:
        log = Path(args.log or "-").absolute()
        if exc.filename is None or Path(exc.filename).absolute() not in (log, *log.parents):
            raise
        return fail(f"demo: cannot write the audit log {args.log}: {exc.strerror}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Ctrl-C, a closed stdout or a bad setting ends it with one line on
    stderr (none for a closed pipe) and an exit status, never a traceback."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return status
    except KeyboardInterrupt:
        print(f"{prog()}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): say nothing, like other tools, and stop writing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return PIPE_CLOSED
    except (SettingsError, LocalMisuse) as exc:
        return fail(str(exc))
    except LifecycleError as exc:
        return fail(str(exc), 1)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=prog(), description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="print the lifecycle transition table")
    emu = sub.add_parser("emulator", help="run the local Live API emulator")
    emu.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    emu.add_argument("--time-scale", type=float, default=1.0,
                     help="multiply every duration (0.01: a 10 min connection lasts 6 s)")
    demo = sub.add_parser("demo", help="run a complete session (emulator, or real with a key)")
    demo.add_argument("--log", help="where to write the JSON Lines audit log (a new file)")
    demo.add_argument("--force", action="store_true", help="overwrite an existing --log file")
    demo.add_argument("--api-key", help="run against the real service (or set GEMINI_API_KEY)")
    demo.add_argument("--model", default=DEFAULT_MODEL,
                      help=f"the Live model (default {DEFAULT_MODEL})")
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
    diagram = sub.add_parser("diagram", help="print the lifecycle diagram (Mermaid) from the "
                                             "table; -o writes files")
    diagram.add_argument("--check", action="store_true",
                         help="exit 1 if the committed diagrams differ from the table")
    diagram.add_argument("--readme", action="store_true",
                         help="in the project's checkout: rewrite diagrams/lifecycle.* and the "
                              "README's generated block")
    diagram.add_argument("--from-log", metavar="LOG", help="highlight one session's path")
    diagram.add_argument("--session", help="the session to show (default: the first)")
    diagram.add_argument("--path-only", action="store_true",
                         help="with --from-log: only the states and edges the session took")
    diagram.add_argument("-o", "--output", metavar="PREFIX",
                         help="write PREFIX.mmd/.dot/.svg (with --from-log, default "
                              "diagrams/session-ID)")
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
    bench.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    bench.add_argument("--from-json", metavar="PATH",
                       help="report (and --check) a run saved with --json; runs nothing")
    args = parser.parse_args(argv)
    if args.command == "bench" and args.peers:
        from .bench import peers

        return peers.main(args.quick, args.json)
    if args.command == "bench":
        from . import bench as bench_module

        if args.json and not Path(args.json).resolve().parent.is_dir():
            return fail(f"bench: --json {args.json}: no such directory")
        if args.from_json:
            try:
                return bench_module.main(False, None, args.check, args.from_json)
            except (OSError, ValueError, KeyError) as exc:
                return fail(f"bench: cannot report {args.from_json}: it is not a run saved by "
                            f"bench --json ({type(exc).__name__}: {exc})")
        return bench_module.main(args.quick, args.json, args.check)
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
        return asyncio.run(run_emulator(args.port, args.time_scale))
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
