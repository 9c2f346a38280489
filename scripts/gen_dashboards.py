"""Write the Grafana dashboards (usdcarb.observability.dashboards) as JSON.

``python scripts/gen_dashboards.py`` rewrites deploy/monitoring/grafana/dashboards/*.json;
``--check`` only compares and exits 1 naming the stale files (run by ``make test``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from usdcarb.observability.dashboards import build, dashboards

OUT = Path(__file__).resolve().parents[1] / "deploy" / "monitoring" / "grafana" / "dashboards"


def render() -> dict[str, str]:
    """Return each dashboard's JSON text by file name."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {f"{stem}.json": encoder.encode(build(board)) + "\n"
            for stem, board in dashboards().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    wanted = render()
    present = {p.name for p in args.out.glob("*.json")} if args.out.exists() else set()
    stale = sorted(name for name, text in wanted.items()
                   if not (args.out / name).exists() or (args.out / name).read_text() != text)
    extra = sorted(present - set(wanted))
    if args.check:
        if stale or extra:
            sys.stderr.write("dashboards are stale: run 'python scripts/gen_dashboards.py' and "
                             f"commit ({', '.join(stale + extra)})\n")
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(wanted[name])
    for name in extra:
        (args.out / name).unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
