"""Settings of the identity service (environment variables USDCARB_IDENTITY_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from usdcarb.platform.service_auth import DEV_SERVICE_KEY
from usdcarb.platform.settings import PlatformSettings, dev_secret, service_config

REPO_ROOT = Path(__file__).resolve().parents[3]
DEV_JWKS = REPO_ROOT / "gateway" / "dev-keys" / "DEV-ONLY-jwks.json"


class IdentitySettings(PlatformSettings):
    """Settings of the identity service (environment variables USDCARB_IDENTITY_*)."""

    model_config = service_config("USDCARB_IDENTITY_")

    issuer: str = Field(default="usdcarb-identity", description="`iss` of access tokens.")
    audience: str = Field(default="usdcarb-api", description="`aud` of access tokens.")
    access_ttl_s: int = Field(default=300, ge=30, le=3600, description="Access token lifetime.")
    refresh_ttl_s: int = Field(
        default=14 * 86400, ge=60, description="Refresh token lifetime (each rotation renews)."
    )
    clock_skew_s: int = Field(default=30, ge=0, description="Skew the gateway tolerates.")
    key_passphrase: SecretStr = dev_secret(
        "dev-identity-key-passphrase", "Encrypts signing keys (and pending API key secrets)."
    )
    key_rotation_interval_s: float = Field(
        default=7 * 86400, gt=0, description="Rotate the signing key after this many seconds."
    )
    key_publish_lead_s: float = Field(
        default=360, ge=0,
        description="A new key is in the JWKS this long before it signs; keep it above the "
        "gateway's JWKS cache duration (300 s).",
    )
    key_refresh_s: float = Field(
        default=1.0, gt=0, description="How often a replica reloads keys and checks rotation."
    )
    service_key: SecretStr = dev_secret(
        DEV_SERVICE_KEY, "HMAC key that service credentials derive from "
        "(usdcarb.platform.service_auth); the DEV-ONLY default is refused outside dev/test.")
    publish_dev_key: bool = Field(
        default=True,
        description="Also publish the committed DEV-ONLY key in the JWKS so `usdcarb dev-token` "
        "works: LOCAL DEVELOPMENT ONLY, refused when env=prod.",
    )
    dev_jwks_path: Path = Field(default=DEV_JWKS, description="The DEV-ONLY JWKS file.")
    lockout_max_failures: int = Field(default=5, ge=1, description="Failures before a lock.")
    lockout_base_s: float = Field(default=30, gt=0, description="First lock; doubles each time.")
    lockout_max_s: float = Field(default=900, gt=0, description="Longest lock.")
    api_key_max_days: int = Field(default=366, ge=1, description="Longest API key lifetime.")
    bootstrap_admin_username: str = Field(
        default="", description="Create this admin when no user exists (empty: no bootstrap)."
    )
    bootstrap_admin_password: SecretStr = dev_secret(
        "dev-only-bootstrap-password", "Password of the bootstrap admin (dev default refused in prod)."
    )

    @model_validator(mode="after")
    def _dev_key_only_in_dev(self) -> Self:
        if self.env == "prod" and self.publish_dev_key:
            raise ValueError("expected publish_dev_key=false when env=prod, got true")
        if self.audit_stream:
            raise ValueError("expected audit_stream=false for identity (it records its own "
                             "refused calls directly), got true")
        return self
