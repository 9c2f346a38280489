"""Pure rules of the rate limit service: the limits file and the counters a call touches."""

from __future__ import annotations

import base64
import json

import pytest

from usdcarb.ratelimit.limits import ConfigError, check_for, highest_role, parse_limits

pytestmark = pytest.mark.unit

LIMITS = parse_limits({
    "api": {"default": {"requests_per_unit": 1, "unit": "second"},
            "analyst": {"requests_per_unit": 5, "unit": "second"}},
    "heavy": {"analyst": {"requests_per_unit": 2, "unit": "minute"}},
    "auth": {"requests_per_unit": 3, "unit": "minute"},
})


def roles(*names: str) -> str:
    return base64.b64encode(json.dumps(list(names)).encode()).decode()


def test_the_tier_is_the_callers_highest_role_and_default_without_one() -> None:
    assert highest_role(roles("viewer", "analyst")) == "analyst"
    assert highest_role(roles()) == "default" and highest_role("%%%") == "default"
    api = check_for([("class", "api"), ("sub", "users/a"), ("roles", roles("analyst"))], LIMITS,
                    100.2)
    assert api is not None and api.limit.requests_per_unit == 5
    assert api.key == "rl:api:api-analyst:users/a:100" and api.reset_in == 1
    # No tier for admin here: the default applies.
    admin = check_for([("class", "api"), ("sub", "users/b"), ("roles", roles("admin"))], LIMITS, 0)
    assert admin is not None and admin.limit.name == "api-default"


def test_heavy_and_auth_budgets_are_separate_counters() -> None:
    heavy = check_for([("class", "heavy"), ("sub", "users/a"), ("roles", roles("analyst"))],
                      LIMITS, 130)
    assert heavy is not None and heavy.limit.unit == "minute" and heavy.reset_in == 50
    auth = check_for([("class", "auth"), ("remote_address", "10.1.2.3")], LIMITS, 0)
    assert auth is not None and auth.key.startswith("rl:auth:auth:10.1.2.3:")
    assert check_for([("class", "other"), ("sub", "x")], LIMITS, 0) is None
    assert check_for([("class", "api")], LIMITS, 0) is None  # no subject: nothing to count


def test_a_malformed_limits_file_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match=r"api-viewer\.unit"):
        parse_limits({"api": {"viewer": {"requests_per_unit": 1, "unit": "fortnight"}}})
    with pytest.raises(ConfigError, match="roles"):
        parse_limits({"api": {"root": {"requests_per_unit": 1, "unit": "second"}}})
