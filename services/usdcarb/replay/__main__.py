"""``python -m usdcarb.replay --port N --data DIR [--clock ISO]``: run the replay server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from usdcarb.replay.archives import ArchiveMirror
from usdcarb.replay.data import load_catalog, write_samples
from usdcarb.replay.server import RECORDING_END_MS, ReplayServer

SAMPLES = Path(__file__).with_name("samples")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usdcarb.replay", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--data", type=Path, default=SAMPLES,
                        help="../shared/data/exchanges or a samples directory")
    parser.add_argument("--clock", default="",
                        help="replay 'now' as ISO time (default: end of the recording)")
    parser.add_argument("--port-file", type=Path, default=None,
                        help="write the bound port here once serving")
    parser.add_argument("--write-samples", type=Path, default=None, metavar="OUT",
                        help="re-encode the demo samples from --data into OUT and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    catalog = load_catalog(args.data)
    # Default 'now': just after the last recorded bar, so Kraken's latest-720 window and
    # incremental syncs see the end of the recording (samples end earlier than the data).
    ends = [int(s.ts_ms[-1]) + 60_000 for s in catalog if len(s)]
    clock = max(ends) // 60_000 * 60_000 if ends else RECORDING_END_MS
    if args.clock:
        clock = int(datetime.fromisoformat(args.clock).timestamp() * 1000)
    if args.write_samples is not None:
        for path, rows in write_samples(catalog, args.write_samples):
            sys.stdout.write(f"{path}: {rows} bars\n")
        return 0
    if not len(catalog):
        sys.stderr.write(f"no recorded series found under {args.data}\n")
        return 2

    async def serve() -> None:
        mirror = ArchiveMirror(catalog, args.data)
        mirror.warm()  # archives are static files: built once, before serving
        server = await ReplayServer(catalog, host=args.host, port=args.port,
                                    clock_ms=clock, archives=mirror).start()
        if args.port_file is not None:
            tmp = args.port_file.with_suffix(".tmp")
            tmp.write_text(str(server.port))
            tmp.replace(args.port_file)
        sys.stdout.write(f"replay server listening on {server.url}\n")
        sys.stdout.flush()
        await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
