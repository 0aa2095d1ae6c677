"""Command line: `python -m statemachine COMMAND`: demo, emulator, audit, keygen, report,
diagram, timeline, telemetry, bench, table."""

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

from . import outputs
from .core import table
from .errors import LifecycleError, LocalMisuse, OutputError, SettingsError
from .models import DEFAULT_MODEL

#: the model `demo` talks to unless --model says otherwise
DEMO_MODEL = DEFAULT_MODEL
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


def port_number(text: str) -> int:
    """--port: a TCP port number, or 0 for a free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535, or 0 for "
                                         "a free one)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535, or 0 for a "
                                         "free one)")
    return port


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
    if args.readme and (args.from_log or args.check or args.output or args.force):
        return fail("diagram --readme writes the project's own diagrams; it takes no other "
                    "option")
    if args.from_log:
        try:
            path = diagram.from_log(Path(args.from_log), args.session)
        except (OSError, ValueError) as exc:
            print(f"cannot read the session from {args.from_log}: {exc}", file=sys.stderr)
            return 2
        has_dot = shutil.which("dot") is not None
        if not args.output:
            # no -o: print the highlighted Mermaid text, write nothing
            print(diagram.mermaid(path, path_only=args.path_only), end="")
            return 0
        prefix = Path(args.output)
        if args.path_only:
            files = diagram.path_outputs(prefix.parent, path, stem=prefix.name)
        else:
            files = diagram.outputs(prefix.parent, path, stem=prefix.name, with_svg=has_dot)
        outputs.write_all(files, force=args.force)
        for target in files:
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
        files = diagram.outputs(prefix.parent, stem=prefix.name, with_svg=has_dot)
        outputs.write_all(files, force=args.force)
        for target in files:
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


def run_telemetry(args: argparse.Namespace) -> int:
    """The metrics table generated from `statemachine.telemetry.definitions`."""
    from pathlib import Path

    from .telemetry import definitions

    if not (args.readme or args.check):
        print(definitions.table())
        return 0
    root = Path.cwd()
    if not (root / "README.md").is_file():
        return fail("telemetry --readme/--check run in the project's checkout (no README.md "
                    "here)")
    if args.check:
        current = definitions.readme_current(root)
        print("README's telemetry table is current" if current else
              f"stale: README.md's telemetry table (run {prog()} telemetry --readme)")
        return 0 if current else 1
    changed = definitions.write_readme(root)
    print("wrote README.md" if changed else "README.md is current")
    return 0


def run_timeline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import timeline

    out = Path(args.output)
    outputs.check(out, force=args.force)
    try:
        data = timeline.read(Path(args.log), args.session)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read the session from {args.log}: {exc}")
    outputs.write(out, timeline.svg_file(data), force=args.force)
    print(f"wrote {args.output}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .audit import report

    out = Path(args.output)
    outputs.check(out, force=args.force)
    try:
        page = report.render(Path(args.log), args.session, whole_table=args.whole_table)
    except (OSError, ValueError) as exc:
        return fail(f"cannot report on {args.log}: {exc}")
    outputs.write(out, page, force=args.force)
    print(f"wrote {args.output}")
    return 0


def run_keyed(args: argparse.Namespace) -> int:
    """The commands that read or write audit keys."""
    from .audit import signing

    if args.command == "keygen":
        private, public, key_id = signing.keygen(args.dir, force=args.force)
        print(f"key id {key_id}\n  private (keep secret, mode 0600): {private}\n"
              f"  public (give to auditors): {public}")
        return 0
    if args.command == "audit":
        from .audit import check as auditcheck

        report = auditcheck.check(args.logs, args.public_key)
        print(auditcheck.as_json(report) if args.json else auditcheck.render(report))
        return report.exit_code
    from . import demo as demo_module

    if args.log is not None and not args.log.strip():
        return fail("demo: --log is empty: give a file name, or leave --log out for a new "
                    "file in the temp folder")
    if args.api_key is not None and not args.real:
        return fail("demo: --api-key is used only with --real (the demo runs against the "
                    "embedded emulator unless --real asks for the real service)")
    key: str | None = None
    source = ""
    if args.real:
        key, source = (args.api_key, "--api-key") if args.api_key else \
            demo_module.api_key_from_env()
        if not key:
            return fail("demo --real: no API key: pass --api-key KEY or set GEMINI_API_KEY "
                        "(or GOOGLE_API_KEY)")
    if args.log is not None:
        try:
            outputs.check(Path(args.log), force=args.force)
        except OutputError as exc:
            return fail(f"demo: {exc}")
    if args.signing_key:
        signing_key: signing.SigningKey | None = signing.SigningKey.from_file(args.signing_key)
    elif os.environ.get(signing.ENV_VAR):
        signing_key = signing.SigningKey.from_env()
    else:
        signing_key = None
    try:
        return demo_module.main(args.log, key, args.model, signing_key,
                                key_source=source, force=args.force, telemetry=args.telemetry)
    except OutputError as exc:
        return fail(f"demo: {exc}")


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
    except (SettingsError, LocalMisuse, OutputError) as exc:
        return fail(str(exc))
    except LifecycleError as exc:
        return fail(str(exc), 1)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=prog(), description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="print the lifecycle transition table")
    emu = sub.add_parser("emulator", help="run the local Live API emulator")
    emu.add_argument("--port", type=port_number, default=0,
                     help="TCP port, 1-65535 (default: a free one)")
    emu.add_argument("--time-scale", type=float, default=1.0, metavar="FACTOR",
                     help="multiply every duration (default: 1, real time; 0.01: a 10 min "
                          "connection lasts 6 s)")
    demo = sub.add_parser(
        "demo", help="run a complete session against the embedded emulator (--real: the real "
                     "service)")
    demo.add_argument("--log", metavar="FILE",
                      help="where to write the JSON Lines audit log (default: a new file in the "
                           "temp folder, named on the last lines)")
    demo.add_argument("--force", action="store_true", help="overwrite an existing --log file")
    demo.add_argument("--real", action="store_true",
                      help="run against the real Live API instead of the emulator (needs a key: "
                           "--api-key, GEMINI_API_KEY or GOOGLE_API_KEY; network; costs quota)")
    demo.add_argument("--api-key", metavar="KEY",
                      help="with --real: the Gemini API key (default: $GEMINI_API_KEY, then "
                           "$GOOGLE_API_KEY)")
    demo.add_argument("--model", default=DEMO_MODEL, metavar="NAME",
                      help=f"the Live model to talk to; the emulator speaks as its generation "
                           f"does (default: {DEMO_MODEL}; e.g. gemini-live-2.5-flash-preview)")
    demo.add_argument("--telemetry", metavar="DEST",
                      help="report the session's OpenTelemetry spans and metrics: 'console' "
                           "prints them, a path writes them as JSON Lines (needs "
                           "opentelemetry-sdk)")
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
    keygen.add_argument("--force", action="store_true",
                        help="replace a key pair already in DIR (logs it signed then verify "
                             "only with a copy of its old public key)")
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
                         help="write PREFIX.mmd/.dot/.svg (without -o, the Mermaid text is "
                              "printed and nothing is written)")
    diagram.add_argument("--force", action="store_true", help="overwrite existing -o files")
    tel = sub.add_parser("telemetry", help="print the OpenTelemetry metrics table (names, "
                         "units, attributes)")
    tel.add_argument("--readme", action="store_true",
                     help="in the project's checkout: rewrite the table at the end of README.md")
    tel.add_argument("--check", action="store_true",
                     help="exit 1 if README.md's table differs from the code's")
    page = sub.add_parser("report", help="one session on one self-contained HTML page")
    page.add_argument("log", metavar="LOG")
    page.add_argument("--session", help="the session to show (default: the first)")
    page.add_argument("--whole-table", action="store_true",
                      help="draw the whole transition table with the path on it")
    page.add_argument("-o", "--output", required=True, metavar="FILE.html")
    page.add_argument("--force", action="store_true", help="overwrite an existing FILE.html")
    timeline = sub.add_parser("timeline", help="draw one session over time (SVG)")
    timeline.add_argument("log", metavar="LOG")
    timeline.add_argument("--session", help="the session to draw (default: the first)")
    timeline.add_argument("-o", "--output", required=True, metavar="FILE.svg")
    timeline.add_argument("--force", action="store_true", help="overwrite an existing FILE.svg")
    bench = sub.add_parser("bench", help="run the benchmarks (not part of the tests)")
    bench.add_argument("--quick", action="store_true",
                       help="a smaller run: a few minutes (4.5 min measured on a busy 2-core "
                            "machine) instead of much longer")
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
    if args.command == "telemetry":
        return run_telemetry(args)
    if args.command == "timeline":
        return run_timeline(args)
    if args.command == "report":
        return run_report(args)
    if args.command in ("audit", "keygen", "demo"):
        from .errors import SigningKeyError

        try:
            return run_keyed(args)
        except SigningKeyError as exc:
            return fail(str(exc))
    if args.command == "table":
        return print_table()
    if args.command == "emulator":
        return asyncio.run(run_emulator(args.port, args.time_scale))
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
