"""Strategy rules: parameter validation, content addressing, diffs and lifecycle.

Pure: standard library and jsonschema only. Parameters are the proto3 JSON form of
``StrategyParameters`` (``{"crossExchangeSpread": {...}}``).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, expected
from usdcarb.strategy.kinds import BY_PARAM_KEY, KindSpec

STRATEGY_ID = re.compile(r"^[a-z][a-z0-9-]{2,62}$")
VERSION_ID_LEN = 16
_VALIDATORS = {k.param_key: Draft202012Validator(k.schema) for k in BY_PARAM_KEY.values()}


class VersionState(enum.StrEnum):
    """Lifecycle of a strategy version (names match usdcarb.v1.VersionState)."""

    DRAFT = "VERSION_STATE_DRAFT"
    BACKTESTED = "VERSION_STATE_BACKTESTED"
    APPROVED = "VERSION_STATE_APPROVED"
    DEPLOYED = "VERSION_STATE_DEPLOYED"
    RETIRED = "VERSION_STATE_RETIRED"


# Forward moves only. DEPLOYED is reached through CreateDeployment, never directly.
_NEXT: dict[VersionState, frozenset[VersionState]] = {
    VersionState.DRAFT: frozenset({VersionState.BACKTESTED, VersionState.RETIRED}),
    VersionState.BACKTESTED: frozenset({VersionState.APPROVED, VersionState.RETIRED}),
    VersionState.APPROVED: frozenset({VersionState.DEPLOYED, VersionState.RETIRED}),
    VersionState.DEPLOYED: frozenset({VersionState.RETIRED}),
    VersionState.RETIRED: frozenset(),
}


@dataclass(frozen=True, kw_only=True)
class CanonicalParameters:
    """Validated parameters with defaults applied, and their content address."""

    kind: KindSpec
    parameters: dict[str, Any]
    canonical_json: str
    content_hash: str

    @property
    def version_id(self) -> str:
        return self.content_hash[:VERSION_ID_LEN]


@dataclass(frozen=True)
class ParameterChange:
    """One parameter that differs between two versions."""

    path: str
    change_type: str  # "ADDED" | "REMOVED" | "MODIFIED"
    old_value: Any
    new_value: Any


def check_strategy_id(strategy_id: str, field: str = "strategy_id") -> None:
    """Refuse an id that is not 3-63 lowercase letters, digits or hyphens."""
    if not STRATEGY_ID.match(strategy_id):
        raise InvalidArgument.for_field(
            field, "3-63 lowercase letters, digits or hyphens starting with a letter", strategy_id
        )


def canonicalize(
    parameters: Mapping[str, Any], *, kind: KindSpec, field: str = "version.parameters"
) -> CanonicalParameters:
    """Validate parameters of ``kind`` and return their canonical form and hash.

    Zero values of fields with a schema default are replaced by the default, because
    proto3 cannot tell "unset" from 0; so ``{}`` and the explicit default hash alike.
    Every violation is reported at once, as ``<field>.<kind>.<param>``.
    """
    keys = [k for k, v in parameters.items() if v is not None]
    if keys != [kind.param_key]:
        raise InvalidArgument.for_field(
            field, f"exactly the {kind.param_key!r} parameters of the strategy's kind", keys
        )
    raw = dict(parameters[kind.param_key] or {})
    props: dict[str, Any] = kind.schema["properties"]
    values = {k: _normalize(props.get(k, {}), v) for k, v in raw.items()}
    for name, prop in props.items():
        if "default" in prop and values.get(name) in (None, 0, 0.0, ""):
            values[name] = prop["default"]
    # Proto3 JSON leaves out nothing when the servicer asks for every field, so a
    # required number sent as 0 arrives as 0 and fails its bound with a clear message.
    violations = sorted(
        _describe(f"{field}.{kind.param_key}", err)
        for err in _VALIDATORS[kind.param_key].iter_errors(values)
    )
    violations += [(f"{field}.{kind.param_key}.{p}", d) for p, d in _cross_field(kind, values)]
    if violations:
        raise InvalidArgument(violations)
    canonical = json.dumps(
        {kind.param_key: values}, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return CanonicalParameters(
        kind=kind, parameters={kind.param_key: values}, canonical_json=canonical,
        content_hash=digest,
    )


_BOUNDS = {
    "minimum": "a number ≥ {}",
    "exclusiveMinimum": "a number > {}",
    "maximum": "a number ≤ {}",
    "exclusiveMaximum": "a number < {}",
    "pattern": "a string matching {}",
    "type": "a value of type {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


def _describe(prefix: str, err: ValidationError) -> tuple[str, str]:
    """Turn a JSON Schema error into (field path, "expected X, got Y")."""
    path = prefix + "".join(f".{p}" for p in err.absolute_path)
    if err.validator == "required":
        missing = str(err.message).split("'")[1]
        return f"{path}.{missing}", "expected a value, got nothing"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return path, expected(f"only the fields {allowed}", extra)
    if err.validator == "uniqueItems":
        return path, expected("distinct items", err.instance)
    template = _BOUNDS.get(str(err.validator))
    if template is None:
        return path, err.message
    return path, expected(template.format(err.validator_value), err.instance)


def _normalize(prop: Mapping[str, Any], value: Any) -> Any:
    """Give numbers the schema's type so 15 and 15.0 hash alike."""
    if prop.get("type") == "number" and isinstance(value, int | float) and not isinstance(
        value, bool
    ):
        return float(value)
    if prop.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _cross_field(kind: KindSpec, v: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield violations the JSON Schema cannot express."""
    for name, value in v.items():
        if isinstance(value, float) and not math.isfinite(value):
            yield name, expected("a finite number", value)
    entry, exit_ = v.get("entryBps"), v.get("exitBps")
    # An invalid entryBps is reported by the schema; comparing with it would only add noise.
    if isinstance(entry, float) and isinstance(exit_, float) and 0 < entry <= exit_:
        yield "exitBps", expected(f"less than entryBps ({entry:g})", exit_)
    if kind.param_key == "crossExchangeSpread" and v.get("venueA") == v.get("venueB"):
        yield "venueB", expected("a venue other than venueA", v.get("venueB"))
    if kind.param_key == "triangular" and isinstance(v.get("symbols"), list):
        yield from _check_loop(v["symbols"])


def _check_loop(symbols: list[Any]) -> Iterator[tuple[str, str]]:
    """Three markets form a loop when each of three assets appears in exactly two."""
    if len(symbols) != 3 or not all(isinstance(s, str) and "/" in s for s in symbols):
        return
    counts: dict[str, int] = {}
    for s in symbols:
        for asset in s.split("/"):
            counts[asset] = counts.get(asset, 0) + 1
    if len(counts) != 3 or set(counts.values()) != {2}:
        yield "symbols", expected("three markets over three assets forming a loop", symbols)


def diff_parameters(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ParameterChange]:
    """List the parameters that differ, by dotted path, sorted."""
    changes: list[ParameterChange] = []
    _diff("", old, new, changes)
    return sorted(changes, key=lambda c: c.path)


def _diff(prefix: str, old: Any, new: Any, out: list[ParameterChange]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old:
                out.append(ParameterChange(path, "ADDED", None, new[key]))
            elif key not in new:
                out.append(ParameterChange(path, "REMOVED", old[key], None))
            else:
                _diff(path, old[key], new[key], out)
    elif old != new:
        out.append(ParameterChange(prefix, "MODIFIED", old, new))


def check_transition(name: str, current: VersionState, target: VersionState) -> None:
    """Refuse a lifecycle move that is not one step forward (or to RETIRED)."""
    if target == VersionState.DEPLOYED:
        raise FailedPrecondition(
            [("LIFECYCLE", name, "versions are deployed with CreateDeployment")],
            reason="DEPLOY_THROUGH_DEPLOYMENT",
        )
    if target not in _NEXT[current]:
        allowed = sorted(s.name for s in _NEXT[current] - {VersionState.DEPLOYED})
        raise FailedPrecondition(
            [("LIFECYCLE", name,
              expected(f"a move from {current.name} to one of {allowed}", target.name))],
            reason="INVALID_TRANSITION",
        )


def check_deployable(name: str, state: VersionState) -> None:
    """Refuse to deploy a version that was not approved."""
    if state not in (VersionState.APPROVED, VersionState.DEPLOYED):
        raise FailedPrecondition(
            [("LIFECYCLE", name, expected("an APPROVED or DEPLOYED version", state.name))],
            reason="VERSION_NOT_APPROVED",
        )
