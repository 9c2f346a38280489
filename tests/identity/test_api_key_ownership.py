"""API keys belong to their user: only that user or an admin lists or revokes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tests.identity.test_identity_service import Env, as_caller, env  # noqa: F401 (fixture)

from usdcarb.v1 import identity_pb2 as pb

pytestmark = pytest.mark.integration


def not_owner(err: grpc.aio.AioRpcError) -> dict[str, str]:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.reason == "NOT_OWNER"
            return dict(info.metadata)
    raise AssertionError("no ErrorInfo")


async def test_only_the_keys_user_or_an_admin_revokes_it(env: Env) -> None:  # noqa: F811
    frank = await env.user("frank", pb.ROLE_TRADER)
    gina = await env.user("gina", pb.ROLE_TRADER)
    expire = timestamp_pb2.Timestamp()
    expire.FromDatetime(datetime.now(UTC) + timedelta(days=30))
    me = as_caller(frank.name, "trader")
    made = await env.stub.CreateApiKey(pb.CreateApiKeyRequest(parent="users/me", api_key=pb.ApiKey(
        display_name="ci", roles=[pb.ROLE_VIEWER], expire_time=expire)), metadata=me)
    key = made.api_key
    assert key.owner == frank.name
    other = as_caller(gina.name, "trader")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.name), metadata=other)
    assert not_owner(err.value) == {"resource": key.name}
    with pytest.raises(grpc.aio.AioRpcError) as err:  # reads too: keys are private
        await env.stub.ListApiKeys(pb.ListApiKeysRequest(parent=frank.name), metadata=other)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await env.stub.ListApiKeys(pb.ListApiKeysRequest(parent="users/me"), metadata=me)
    assert [(k.name, k.HasField("revoke_time")) for k in listed.api_keys] == [(key.name, False)]
    # Still usable after the refused revoke.
    await env.stub.ExchangeApiKey(pb.ExchangeApiKeyRequest(api_key=made.secret))
    revoked = await env.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.name),
                                          metadata=env.admin)
    assert revoked.HasField("revoke_time") and revoked.owner == frank.name
