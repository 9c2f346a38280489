"""unzip_member: a deflated member inflated in one call (zlib-ng) equals what ZipFile.read
gives, other members go through ZipFile, and damage is told apart: a cut zip is
TRUNCATED, a bad deflate stream or CRC is CORRUPT."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from usdcarb.ingestion.archive import FileProblem, Reason, unzip_member

pytestmark = pytest.mark.unit


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _csv(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return "".join(f"{1_600_000_000 + 60 * i},{p:.2f},{p + 1:.2f},{p - 1:.2f},{p:.2f},1.5,7\n"
                   for i, p in enumerate(rng.normal(100, 1, rows))).encode()


def test_members_inflate_to_the_bytes_zipfile_reads() -> None:
    members = {"A_1.csv": _csv(5000, 1), "B_5.csv": _csv(300, 2), "empty.csv": b""}
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        body = _zip(members, method)
        for name, data in members.items():
            assert unzip_member(body, name, "x.zip") == data
            assert unzip_member(io.BytesIO(body), name, "x.zip") == data  # a spooled file
    assert unzip_member(_zip({"only.csv": members["A_1.csv"]}), None, "x.zip") == members["A_1.csv"]


def test_damaged_zips_are_truncated_or_corrupt() -> None:
    data = _csv(5000, 3)
    body = _zip({"A_1.csv": data})
    with pytest.raises(FileProblem) as cut:
        unzip_member(body[: len(body) // 2], "A_1.csv", "x.zip")
    assert cut.value.reason is Reason.TRUNCATED
    start = 30 + len("A_1.csv")
    for offset in (start + 5, start + 2000, start + 4000):  # deflate stream or CRC fails
        bad = bytearray(body)
        for i in range(offset, offset + 8):
            bad[i] ^= 0x5A
        with pytest.raises(FileProblem) as broken:
            unzip_member(bytes(bad), "A_1.csv", "x.zip")
        assert broken.value.reason is Reason.CORRUPT, offset
    assert unzip_member(body, "A_1.csv", "x.zip") == data
