"""What every ``usdcarb`` command shares: connection options, the SDK client, output
(rich tables for people, ``--json`` for scripts), progress and exit codes.

Exit codes (the same for every command built here; scripts may rely on them):

====  ==========================================================================
0     done; the job (backtest, sweep, ingest) succeeded
1     the job ended FAILED or CANCELLED (the outcome is printed)
2     bad arguments: refused locally (usage) or by the server (INVALID_ARGUMENT,
      OUT_OF_RANGE)
3     not found (NOT_FOUND)
4     not allowed: no or a refused token (UNAUTHENTICATED), not the owner or role
      (PERMISSION_DENIED)
5     refused in the current state (FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED),
      e.g. market data judged unusable
6     the platform cannot answer now (UNAVAILABLE, DEADLINE_EXCEEDED,
      RESOURCE_EXHAUSTED): try again later
7     any other error (INTERNAL, UNIMPLEMENTED, ...)
130   interrupted (Ctrl-C); a job already started keeps running on the server
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import betterproto2
import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from usdcarb_sdk import Client, UsdcarbError

STACK_CA = Path(__file__).resolve().parents[3] / ".run" / "stack" / "tls" / "ca.pem"

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4
EXIT_REFUSED = 5
EXIT_UNAVAILABLE = 6
EXIT_ERROR = 7
EXIT_INTERRUPTED = 130

_EXIT_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE, grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED, grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_REFUSED,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_REFUSED, grpc.StatusCode.ABORTED: EXIT_REFUSED,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_UNAVAILABLE,
}


class UsageError(Exception):
    """Arguments the command cannot use (exit 2)."""


def exit_code(error: UsdcarbError) -> int:
    """Return the documented exit code of a failed call."""
    return _EXIT_BY_CODE.get(error.code, EXIT_ERROR)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() owns the exit code."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def add_connection(parser: argparse.ArgumentParser) -> None:
    """Add --gateway, --cacert, --token and --json."""
    group = parser.add_argument_group("connection and output")
    group.add_argument("--gateway", default=os.environ.get("USDCARB_GATEWAY",
                                                           "https://localhost:8080"),
                       help="gateway URL or host:port, TLS unless http:// "
                            "(default $USDCARB_GATEWAY or https://localhost:8080)")
    group.add_argument("--cacert", default=os.environ.get("USDCARB_CA_FILE") or (
        str(STACK_CA) if STACK_CA.exists() else None),
        help="CA to trust (default $USDCARB_CA_FILE, else the local stack's dev CA)")
    group.add_argument("--token", default=os.environ.get("USDCARB_TOKEN", ""),
                       help="bearer token (default $USDCARB_TOKEN, else a minted development "
                            "token: USDCARB_ENV dev/test only)")
    group.add_argument("--json", action="store_true",
                       help="print JSON (proto3 JSON mapping) on stdout instead of tables")


@contextmanager
def client_for(args: argparse.Namespace) -> Iterator[Client]:
    """Open an SDK client from the connection options."""
    token = args.token
    if not token:
        from usdcarb.gateway.devtoken import mint_dev_token

        token = mint_dev_token(os.environ.get("USER", "cli"), ["trader"])
    gateway = args.gateway if "://" in args.gateway else f"https://{args.gateway}"
    ca = args.cacert if gateway.startswith("https://") else None
    with Client(gateway, token=token, ca_file=ca, stream_timeout=None) as client:
        yield client


class Output:
    """Where a command writes: tables and text for people, JSON for scripts."""

    def __init__(self, args: argparse.Namespace, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.json = bool(getattr(args, "json", False))
        self.out = out or sys.stdout
        self.console = Console(file=self.out, highlight=False, soft_wrap=False,
                               width=None if self.out.isatty() else 160)
        self.err = Console(file=err or sys.stderr, highlight=False,
                           width=None if (err or sys.stderr).isatty() else 160)

    def emit(self, value: Any) -> None:
        """Print a message (or a list/dict of them) as JSON."""
        self.out.write(json.dumps(to_jsonable(value), indent=2, sort_keys=True) + "\n")
        self.out.flush()

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              *, numeric: Sequence[str] = ()) -> None:
        """Print a table."""
        table = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            table.add_column(name, justify="right" if name in numeric else "left")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        self.console.print(table)

    def line(self, text: str) -> None:
        """Print a line of text (markup off)."""
        self.console.print(text, markup=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """Print a line on stderr (progress, hints): never mixed into --json output."""
        self.err.print(text, markup=False, soft_wrap=True)

    def report_written(self, name: str, path: Path) -> None:
        """Say where the report of ``name`` was written, and how large it is."""
        size = path.stat().st_size
        if self.json:
            self.emit({"name": name, "report": str(path), "bytes": size})
        else:
            self.line(f"{name}: report written to {path} ({size:,} bytes)")


def to_jsonable(value: Any) -> Any:
    """Return ``value`` with betterproto messages as proto3 JSON dicts."""
    if isinstance(value, betterproto2.Message):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


class JobProgress:
    """Draw the progress of long work on stderr: a live rich bar on a terminal, one line
    per whole percent otherwise (logs and tests see every step)."""

    def __init__(self, output: Output, label: str) -> None:
        self._console = output.err
        self._label = label
        self._live = self._console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last = ""

    def __enter__(self) -> JobProgress:
        if self._live:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.percentage:>5.1f}%"),
                                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                      console=self._console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self._label, total=1.0, detail="")
        return self

    def update(self, fraction: float, detail: str = "") -> None:
        """Show ``fraction`` done (0..1) with a short ``detail``."""
        fraction = min(1.0, max(0.0, fraction))
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=fraction, detail=detail)
            return
        line = f"{self._label} {fraction:6.1%} {detail}".rstrip()
        key = f"{int(fraction * 100)} {detail.split('  ')[0]}"
        if key != self._last:
            self._last = key
            self._console.print(line, markup=False, highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def run_command(handler: Callable[[argparse.Namespace, Output], int],
                args: argparse.Namespace, prog: str) -> int:
    """Run a command's handler and turn failures into the documented exit codes."""
    output = Output(args)
    try:
        return handler(args, output)
    except UsageError as exc:
        output.note(f"{exc}")
        return EXIT_USAGE
    except UsdcarbError as exc:
        output.note(f"{prog}: {exc.code.name}: {exc.message}")
        for detail in describe_error(exc):
            output.note(f"  {detail}")
        return exit_code(exc)
    except KeyboardInterrupt:
        output.note(f"{prog}: interrupted (work already started keeps running on the server)")
        return EXIT_INTERRUPTED


def describe_error(error: UsdcarbError) -> list[str]:
    """Return the decoded details of an error as lines (reason, fields, preconditions)."""
    lines = []
    if error.reason:
        lines.append(f"reason: {error.reason}")
    for v in getattr(error, "field_violations", []):
        lines.append(f"field {v.field}: {v.description}")
    for v in getattr(error, "violations", []):
        lines.append(f"{v.type} {v.subject}: {v.description}")
    return lines


def _chosen(parser: argparse.ArgumentParser,
            args: argparse.Namespace) -> argparse.ArgumentParser:
    """Return the deepest parser the arguments chose (for its help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return _chosen(action.choices[name], args)
    return parser


def parse_and_run(parser: ArgumentParser, argv: Sequence[str], prog: str) -> int:
    """Parse ``argv`` with ``parser`` (whose subcommands set ``handler``) and run it."""
    output = Output(argparse.Namespace())
    try:
        args = parser.parse_args(list(argv))
    except UsageError as exc:
        output.note(str(exc))
        output.note(parser.format_usage().rstrip())
        return EXIT_USAGE
    if getattr(args, "handler", None) is None:  # a command without its subcommand
        output.note(_chosen(parser, args).format_help().rstrip())
        return EXIT_USAGE
    return run_command(args.handler, args, prog)
