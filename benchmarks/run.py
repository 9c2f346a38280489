"""Run every benchmark (``make bench``): each ``bench_*.py`` here, one after another.

Benchmarks compare with a peer or a ceiling measured in the same run and report
ratios; they are never timed assertions in the test suite. Each module has a
``main(argv) -> int`` and prints its own report; ``--only NAME`` runs one.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", default=[],
                        help="run only bench_NAME.py (repeatable)")
    args, rest = parser.parse_known_args(argv)
    modules = sorted(HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if m.stem.removeprefix("bench_") in args.only]
    failures = 0
    for path in modules:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n##### {path.stem}", flush=True)
        started = time.monotonic()
        code = module.main(rest)
        print(f"##### {path.stem}: exit {code} in {time.monotonic() - started:.1f}s", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
