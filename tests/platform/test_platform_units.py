"""Pure parts of the platform: error table, caller parsing, settings, JSON logging."""

from __future__ import annotations

import base64
import json
import logging
import sys

import grpc
import pytest
from google.rpc import error_details_pb2
from pydantic import SecretStr, ValidationError

from usdcarb.platform.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from usdcarb.platform.identity import ANONYMOUS, caller_from_claims
from usdcarb.platform.logging import JsonFormatter, RequestIdFilter, request_id
from usdcarb.platform.settings import PlatformSettings, dev_secret, service_config
from usdcarb.platform.status import domain_status, internal_status, unpack_details

pytestmark = pytest.mark.unit


def b64url_unpadded(claims: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("strategy", "strategies/s1"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExists("strategy", "strategies/s1"), grpc.StatusCode.ALREADY_EXISTS),
        (InvalidArgument([("a", "expected x, got y")]), grpc.StatusCode.INVALID_ARGUMENT),
        (
            FailedPrecondition([("STATE", "s1", "expected approved, got draft")]),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (PermissionDenied("no", permission="strategies.deploy"), grpc.StatusCode.PERMISSION_DENIED),
        (Unauthenticated(), grpc.StatusCode.UNAUTHENTICATED),
        (
            ResourceExhausted([("users/a", "60 rpm")], retry_after=1.5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (Unavailable("exchange down", retry_after=2), grpc.StatusCode.UNAVAILABLE),
        (Aborted("etag mismatch"), grpc.StatusCode.ABORTED),
        (
            Unimplemented("usdcarb.v1.BacktestService/RunSweep", "backtest sweep work"),
            grpc.StatusCode.UNIMPLEMENTED,
        ),
        (Cancelled("job cancelled"), grpc.StatusCode.CANCELLED),
        (DomainError("uncategorised"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_every_domain_error_maps_to_its_code_with_error_info(
    error: DomainError, code: grpc.StatusCode
) -> None:
    status = domain_status(error, request_id="r1")

    assert status.code == code.value[0]
    assert status.message == error.message
    [info] = unpack_details(status, error_details_pb2.ErrorInfo)
    assert info.domain == "usdcarb.dev" and info.reason == error.reason
    [request] = unpack_details(status, error_details_pb2.RequestInfo)
    assert request.request_id == "r1"


def test_subclass_inherits_its_ancestors_mapping() -> None:
    class StrategyNotFound(NotFound):
        default_reason = "STRATEGY_NOT_FOUND"

    status = domain_status(StrategyNotFound("strategy", "strategies/x"))
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    [info] = unpack_details(status, error_details_pb2.ErrorInfo)
    assert info.reason == "STRATEGY_NOT_FOUND"


def test_quota_and_retry_details() -> None:
    status = domain_status(ResourceExhausted([("users/a", "60 rpm")], retry_after=1.5))

    [quota] = unpack_details(status, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "users/a"
    [retry] = unpack_details(status, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)


def test_precondition_failure_details_and_message() -> None:
    error = FailedPrecondition([("STATE", "strategies/s1", "expected approved, got draft")])
    [failure] = unpack_details(domain_status(error), error_details_pb2.PreconditionFailure)

    assert failure.violations[0].type == "STATE"
    assert error.message == "failed precondition: strategies/s1: expected approved, got draft"


def test_invalid_argument_for_field_reads_expected_got() -> None:
    error = InvalidArgument.for_field("timeframe", "one of 1m, 5m, 1h", "7m")
    assert error.message == "invalid argument: timeframe: expected one of 1m, 5m, 1h, got '7m'"


def test_unimplemented_names_method_and_owner() -> None:
    error = Unimplemented("usdcarb.v1.BacktestService/RunSweep", "issue 12 (sweeps)")
    assert "RunSweep is not implemented yet" in error.message and "issue 12" in error.message


def test_internal_status_is_opaque() -> None:
    status = internal_status("req-9")
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert status.message == "internal error (request id req-9)"


def test_caller_reads_subject_roles_scopes_and_token_id_from_claims() -> None:
    claims = {"sub": "users/bob", "roles": ["trader"], "scope": "backtests:run read",
              "jti": "tok-1", "note": "~~~?"}

    caller = caller_from_claims(claims)

    assert caller.subject == "users/bob" and caller.authenticated
    assert caller.roles == frozenset({"trader"})
    assert caller.scopes == frozenset({"backtests:run", "read"})
    assert caller.token_id == "tok-1" and caller.claims["note"] == "~~~?"
    assert not caller.service and not caller.is_admin


def test_service_principal_names_its_service() -> None:
    caller = caller_from_claims({"sub": "service:backtest", "roles": []})
    assert caller.service == "backtest" and not caller.roles
    assert not ANONYMOUS.authenticated and not ANONYMOUS.service


def test_caller_require_checks_roles() -> None:
    caller = caller_from_claims({"sub": "users/c", "roles": ["analyst"]})
    caller.require(role="analyst")
    with pytest.raises(PermissionDenied):
        caller.require(role="admin")
    with pytest.raises(Unauthenticated):
        ANONYMOUS.require()


class StrategySettings(PlatformSettings):
    model_config = service_config("USDCARB_TESTSTRATEGY_")

    webhook_key: SecretStr = dev_secret("dev-webhook-key", "HMAC key of webhooks.")


def test_settings_refuse_dev_secret_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USDCARB_TESTSTRATEGY_ENV", "prod")
    monkeypatch.setenv("USDCARB_TESTSTRATEGY_DATABASE_URL", "postgresql://u:real@db/x")
    with pytest.raises(ValidationError, match="webhook_key"):
        StrategySettings()

    monkeypatch.setenv("USDCARB_TESTSTRATEGY_WEBHOOK_KEY", "a-real-key")
    settings = StrategySettings()
    assert settings.env == "prod" and "real" not in repr(settings)


def test_settings_accept_dev_secrets_in_dev_and_test() -> None:
    assert StrategySettings(env="test").fields_with_dev_defaults() == [
        "database_url",
        "webhook_key",
    ]


def test_settings_are_frozen_and_validated() -> None:
    settings = PlatformSettings(env="test", log_level="debug")
    assert settings.log_level == "DEBUG"
    with pytest.raises(ValidationError):
        settings.grpc_port = 1
    with pytest.raises(ValidationError, match="db_pool_min"):
        PlatformSettings(env="test", db_pool_min=5, db_pool_max=2)


def test_every_setting_has_a_description() -> None:
    for name, field in PlatformSettings.model_fields.items():
        assert field.description, name


def test_json_formatter_emits_request_id_and_traceback() -> None:
    token = request_id.set("rid-7")
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            record = logging.LogRecord(
                "usdcarb.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
            )
        record.strategy = "s1"
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "failed x" and line["level"] == "ERROR"
    assert line["logger"] == "usdcarb.test" and line["request_id"] == "rid-7"
    assert "ValueError: bad" in line["exc_info"] and line["strategy"] == "s1"
    assert line["timestamp"].endswith("+00:00")
