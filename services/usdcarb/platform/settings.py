"""Declare the settings every service shares, read once from the environment.

A service subclasses ``PlatformSettings`` with its own prefix and fields::

    class StrategySettings(PlatformSettings):
        model_config = service_config("USDCARB_STRATEGY_")

        max_versions: int = Field(default=1000, description="Versions kept per strategy.")
        webhook_key: SecretStr = dev_secret("dev-webhook-key", "HMAC key of webhooks.")

Every field has a default and a one-line description. A field declared with
``dev_secret`` keeps a development default that is refused unless ``env`` is dev or
test, so a forgotten variable fails start-up in prod instead of running insecurely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_SECRET_MARK = "usdcarb_dev_secret"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def service_config(env_prefix: str) -> SettingsConfigDict:
    """Return the settings config of a service reading variables named ``<env_prefix>X``."""
    return SettingsConfigDict(env_prefix=env_prefix, frozen=True, extra="ignore")


def dev_secret(default: str, description: str) -> Any:
    """Declare a secret field whose ``default`` is acceptable only in dev and test."""
    return Field(
        default=SecretStr(default),
        description=description,
        json_schema_extra={_DEV_SECRET_MARK: True},
    )


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class PlatformSettings(BaseSettings):
    """Hold the runtime settings of one service process (frozen)."""

    model_config = service_config("USDCARB_")

    env: Literal["dev", "test", "prod"] = Field(
        default="dev", description="Deployment environment; prod refuses development secrets."
    )
    grpc_host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(default=0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    port_file: Path | None = Field(
        default=None, description="If set, write the bound gRPC port here for a supervisor."
    )
    grpc_max_message_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest gRPC message sent or received."
    )
    plaintext: bool = Field(
        default=False, description="Serve gRPC and call other services without TLS. Only for "
        "in-process test servers and pods whose sidecar does mutual TLS (Istio); otherwise "
        "every connection is mutual TLS with the tls_* files.")
    sidecar_mtls: bool = Field(
        default=False, description="A service mesh sidecar (Istio, mTLS STRICT) encrypts this "
        "pod's traffic: the only way env=prod accepts plaintext.")
    tls_cert_file: Path | None = Field(
        default=None, description="This service's PEM certificate: served to callers and "
        "presented to the services it calls.")
    tls_key_file: Path | None = Field(
        default=None, description="The PEM private key of tls_cert_file (keep it 0600).")
    tls_ca_file: Path | None = Field(
        default=None, description="PEM CA that callers' and called services' certificates "
        "must chain to (the stack's dev CA locally).")
    metrics_host: str = Field(
        default="127.0.0.1", description="Prometheus endpoint address; 0.0.0.0 in containers."
    )
    metrics_port: int = Field(
        default=0,
        ge=-1,
        le=65535,
        description="Prometheus endpoint port; 0 picks a free one, -1 off.",
    )
    database_url: SecretStr = dev_secret(
        "postgresql://usdcarb:usdcarb@127.0.0.1:5432/usdcarb",
        "PostgreSQL DSN (asyncpg); its password is a secret.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Connections the pool keeps open.")
    db_pool_max: int = Field(default=10, ge=1, description="Most connections the pool opens.")
    replica_database_url: SecretStr = Field(
        default=SecretStr(""), description="DSN of a streaming-replication read replica for "
        "candle reads (usdcarb.platform.replica); empty: every read goes to the primary.")
    replica_max_lag_s: float = Field(
        default=5.0, gt=0, description="Candle reads go to the replica only while it holds "
        "the primary's state of at most this many seconds ago; else to the primary.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL.")
    audit_stream: bool = Field(
        default=False, description="Append calls the role table refuses to the Redis stream "
        "usdcarb:audit, which the identity service records in its audit log (the dev "
        "stack turns it on for every service but identity, which records its own).")
    identity_address: str = Field(
        default="", description="host:port of the identity service: its JWKS verifies "
        "callers' tokens and it issues this service's own token for calls to other services.")
    jwks_file: Path | None = Field(
        default=None, description="Verify tokens against this JWKS file instead of asking "
        "identity (offline or in-process tests); identity_address wins when both are set.")
    token_issuer: str = Field(default="usdcarb-identity", description="Expected `iss` of tokens.")
    token_audience: str = Field(default="usdcarb-api", description="Expected `aud` of tokens.")
    token_leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew tolerated on exp and nbf.")
    jwks_max_age_s: float = Field(
        default=300.0, gt=0, description="Refetch the JWKS after this many seconds.")
    jwks_refetch_floor_s: float = Field(
        default=5.0, ge=0, description="At most one refetch for an unknown `kid` this often.")
    service_credential: SecretStr = Field(
        default=SecretStr(""), description="This service's credential for IdentityService."
        "IssueServiceToken; empty in dev/test means the one derived from the DEV-ONLY service "
        "key, and is refused in prod by the services that call others.")
    health_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between dependency health checks."
    )
    shutdown_drain_delay_s: float = Field(
        default=0.0, ge=0, description="Seconds to report NOT_SERVING before refusing new RPCs."
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="Seconds in-flight RPCs get to finish on SIGTERM."
    )
    log_level: str = Field(default="INFO", description="Root log level (DEBUG, INFO, WARNING...).")
    log_json: bool = Field(default=True, description="Log JSON lines (true) or readable text.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LEVELS:
            raise ValueError(f"expected one of {', '.join(_LEVELS)}, got {value!r}")
        return level

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"expected db_pool_min <= db_pool_max, got {self.db_pool_min} > {self.db_pool_max}"
            )
        if self.plaintext and self.env == "prod" and not self.sidecar_mtls:
            raise ValueError("expected TLS in env=prod (or sidecar_mtls=true behind a mesh "
                             "that does mutual TLS), got plaintext=true alone")
        if self.env not in ("dev", "test"):
            defaults = self.fields_with_dev_defaults()
            if defaults:
                raise ValueError(
                    f"expected real secrets when env={self.env}, got development defaults "
                    f"for {', '.join(defaults)}"
                )
        return self

    def fields_with_dev_defaults(self) -> list[str]:
        """Return the names of secret fields still holding their development default."""
        found = []
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get(_DEV_SECRET_MARK):
                if _plain(getattr(self, name)) == _plain(field.default):
                    found.append(name)
        return found
