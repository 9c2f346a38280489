"""Make DEST equal SRC, one atomic rename per changed file (used by scripts/generate.sh).

Generated code is rebuilt in a staging directory and synced here, so the working tree
never lacks gen/ mid-generation: a test or a service started meanwhile sees either the old
file or the new one, never an empty directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def sync(src: Path, dest: Path) -> int:
    changed = 0
    wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        data = (src / rel).read_bytes()
        target = dest / rel
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.sync-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        changed += 1
    if dest.is_dir():
        for path in sorted(dest.rglob("*"), reverse=True):
            rel = path.relative_to(dest)
            if path.is_file() and rel not in wanted:
                path.unlink()
                changed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return changed


if __name__ == "__main__":
    print(sync(Path(sys.argv[1]), Path(sys.argv[2])))
