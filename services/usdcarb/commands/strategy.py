"""``usdcarb strategy create|version|list|show``: strategies and their versions.

    usdcarb strategy create usdc-spread --kind cross-exchange-spread --name "USDC spread"
    usdcarb strategy version usdc-spread --params '{"crossExchangeSpread": {"symbol": "BTC/USDC",
        "venueA": "binance", "venueB": "bybit", "entryBps": 60, "exitBps": 5, "quantity": 0.5}}'
    usdcarb strategy version usdc-spread --params @params.json
    usdcarb strategy list [--kind peg-reversion]
    usdcarb strategy show usdc-spread

Parameters are proto3 JSON keyed by the kind (camelCase or snake_case), inline or
``@file``. Exit codes: see ``usdcarb help`` (commands.common).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from usdcarb.commands.common import (
    EXIT_OK,
    Output,
    UsageError,
    add_connection,
    client_for,
)
from usdcarb_sdk import v1
from usdcarb_sdk.strategy_requests import parse_kind, strategy_name


def _when(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else ""


def load_json_arg(text: str, what: str) -> Any:
    """Return JSON given inline or as ``@path``."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"expected {what} as JSON or @file, got {text[:60]!r}: {exc}") from None


def _kind(value: str) -> v1.StrategyKind:
    try:
        return parse_kind(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def create(args: argparse.Namespace, out: Output) -> int:
    labels = {}
    for item in args.label or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected --label key=value, got {item!r}")
        labels[key] = value
    with client_for(args) as client:
        strategy = client.strategies.create(
            display_name=args.name or args.strategy_id, kind=_kind(args.kind),
            strategy_id=args.strategy_id, description=args.description, labels=labels)
    if out.json:
        out.emit(strategy)
    else:
        out.line(f"created {strategy.name} ({strategy.kind.name.lower()}, owner "
                 f"{strategy.owner})")
    return EXIT_OK


def version(args: argparse.Namespace, out: Output) -> int:
    params = load_json_arg(args.params, "--params")
    with client_for(args) as client:
        made = client.strategies.create_version(args.strategy, params,
                                                description=args.description)
    if out.json:
        out.emit(made)
    else:
        out.line(f"{made.name}  ({made.state.name.lower()}, content hash "
                 f"{made.content_hash[:16]})")
    return EXIT_OK


def list_(args: argparse.Namespace, out: Output) -> int:
    rows = []
    with client_for(args) as client:
        kind = _kind(args.kind) if args.kind else None
        for s in client.strategies.all_strategies(kind=kind, label=args.label or ""):
            rows.append(s)
            if args.limit and len(rows) >= args.limit:
                break
    if out.json:
        out.emit(rows)
        return EXIT_OK
    out.table(f"{len(rows)} strategies", ["name", "kind", "display name", "versions",
                                          "latest version", "owner", "updated"],
              [(s.name, s.kind.name.lower(), s.display_name, s.version_count,
                s.latest_version_id[:12], s.owner, _when(s.update_time)) for s in rows],
              numeric=["versions"])
    return EXIT_OK


def show(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        strategy = client.strategies.get(args.strategy)
        versions = list(client.strategies.all_versions(strategy_name(args.strategy)))
    if out.json:
        out.emit({"strategy": strategy, "versions": versions})
        return EXIT_OK
    out.line(f"{strategy.name}: {strategy.display_name} ({strategy.kind.name.lower()})")
    if strategy.description:
        out.line(f"  {strategy.description}")
    out.line(f"  owner {strategy.owner}, created {_when(strategy.create_time)}"
             + (f", labels {dict(strategy.labels)}" if strategy.labels else ""))
    out.table(f"{len(versions)} versions", ["version", "state", "created", "parameters"],
              [(v.name.rsplit("/", 1)[-1], v.state.name.lower(), _when(v.create_time),
                v.canonical_parameters or json.dumps(v.parameters.to_dict() if v.parameters
                                                     else {}))
               for v in versions])
    return EXIT_OK


def register(commands: Any) -> None:
    """Add the ``strategy`` command and its subcommands."""
    parser = commands.add_parser("strategy", help="create, version, list and show strategies",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="create|version|list|show")
    p = sub.add_parser("create", help="create a strategy of one kind")
    p.add_argument("strategy_id", help="id, e.g. usdc-spread (lower case, digits, '-')")
    p.add_argument("--kind", required=True,
                   help="cross-exchange-spread | peg-reversion | triangular")
    p.add_argument("--name", default="", help="display name (default: the id)")
    p.add_argument("--description", default="")
    p.add_argument("--label", action="append", help="key=value (repeatable)")
    p.set_defaults(handler=create)
    p = sub.add_parser("version", help="add a version (parameters) to a strategy")
    p.add_argument("strategy", help="strategy id or name")
    p.add_argument("--params", required=True, help="parameters as JSON, or @file")
    p.add_argument("--description", default="")
    p.set_defaults(handler=version)
    p = sub.add_parser("list", help="list strategies, newest first")
    p.add_argument("--kind", default="")
    p.add_argument("--label", default="", help="only strategies with this label (key=value)")
    p.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    p.set_defaults(handler=list_)
    p = sub.add_parser("show", help="a strategy and its versions")
    p.add_argument("strategy", help="strategy id or name")
    p.set_defaults(handler=show)
    for p in sub.choices.values():
        add_connection(p)
