"""The identity of a backtest run: what its numbers depend on, hashed.

Pure. The digest covers the strategy version id (itself the content hash of the
parameters), the hash of exactly the market data read, the hash of the canonical
config and the engine version. The engine is deterministic, so equal digests mean
equal results; a changed bar, fee or engine release changes the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, no spaces, exact float repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(canonical_config: Mapping[str, Any]) -> str:
    """Return the sha256 hex digest of a canonical config (see config.RunSpec.canonical)."""
    return hashlib.sha256(canonical_json(dict(canonical_config)).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Everything a result depends on, and the digest of it."""

    strategy_version_id: str
    data_snapshot_hash: str
    config_hash: str
    engine_version: str

    @property
    def digest(self) -> str:
        blob = canonical_json([self.strategy_version_id, self.data_snapshot_hash,
                               self.config_hash, self.engine_version])
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict[str, str]:
        return {"strategyVersionId": self.strategy_version_id,
                "dataSnapshotHash": self.data_snapshot_hash, "configHash": self.config_hash,
                "engineVersion": self.engine_version, "digest": self.digest}
