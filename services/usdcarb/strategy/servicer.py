"""gRPC StrategyService: proto ↔ application calls, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import empty_pb2, json_format, struct_pb2, timestamp_pb2

from usdcarb.platform.identity import get_caller
from usdcarb.strategy.app import StrategyApp, kind_by_slug
from usdcarb.strategy.kinds import KindSpec
from usdcarb.strategy.model import DeploymentRecord, StrategyRecord, VersionRecord
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc as pb_grpc


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _enum_name(enum: Any, number: int) -> str:
    return str(enum.Name(number)) if number in enum.values() else str(number)


def kind_to_pb(k: KindSpec) -> pb.StrategyKindInfo:
    schema = struct_pb2.Struct()
    schema.update(k.schema)
    return pb.StrategyKindInfo(
        name=k.resource_name, kind=pb.StrategyKind.Value(k.enum_name),
        display_name=k.display_name, description=k.description, parameter_schema=schema,
    )


def strategy_to_pb(s: StrategyRecord) -> pb.Strategy:
    return pb.Strategy(
        name=s.name, display_name=s.display_name, description=s.description,
        kind=pb.StrategyKind.Value(s.kind), labels=s.labels, creator=s.creator,
        create_time=_ts(s.create_time), update_time=_ts(s.update_time),
        latest_version_id=s.latest_version_id, version_count=s.version_count, etag=s.etag,
        owner=s.owner,
    )


def version_to_pb(v: VersionRecord) -> pb.StrategyVersion:
    return pb.StrategyVersion(
        name=v.name, version_id=v.version_id,
        parameters=json_format.ParseDict(v.parameters, pb.StrategyParameters()),
        description=v.description, state=pb.VersionState.Value(v.state.value),
        canonical_parameters=v.canonical, content_hash=v.content_hash, sequence=v.sequence,
        creator=v.creator, create_time=_ts(v.create_time), state_time=_ts(v.state_time),
        owner=v.owner,
    )


def deployment_to_pb(d: DeploymentRecord) -> pb.Deployment:
    return pb.Deployment(
        name=d.name, version=f"strategies/{d.strategy_id}/versions/{d.version_id}",
        environment=pb.DeploymentEnvironment.Value(d.environment),
        state=pb.DeploymentState.Value(d.state), notes=d.notes, creator=d.creator,
        create_time=_ts(d.create_time), stop_time=_ts(d.stop_time), owner=d.owner,
    )


def _value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if v is None:
        out.null_value = struct_pb2.NULL_VALUE
    else:
        json_format.ParseDict(v, out)
    return out


class StrategyServicer(pb_grpc.StrategyServiceServicer):
    """usdcarb.v1.StrategyService."""

    def __init__(self, app: StrategyApp) -> None:
        self._app = app

    async def ListStrategyKinds(
        self, request: pb.ListStrategyKindsRequest, context: Any
    ) -> pb.ListStrategyKindsResponse:
        return pb.ListStrategyKindsResponse(
            strategy_kinds=[kind_to_pb(k) for k in self._app.kinds()]
        )

    async def GetStrategyKind(self, request: pb.GetStrategyKindRequest, context: Any) -> Any:
        return kind_to_pb(kind_by_slug(request.name))

    async def CreateStrategy(self, request: pb.CreateStrategyRequest, context: Any) -> Any:
        s = request.strategy
        created = await self._app.create_strategy(
            strategy_id=request.strategy_id, display_name=s.display_name,
            description=s.description, kind=_enum_name(pb.StrategyKind, s.kind),
            labels=dict(s.labels), creator=get_caller().subject, request_id=request.request_id,
        )
        return strategy_to_pb(created)

    async def GetStrategy(self, request: pb.GetStrategyRequest, context: Any) -> Any:
        return strategy_to_pb(await self._app.get_strategy(request.name))

    async def ListStrategies(self, request: pb.ListStrategiesRequest, context: Any) -> Any:
        page = await self._app.list_strategies(
            page_size=request.page_size, page_token=request.page_token,
            kind=_enum_name(pb.StrategyKind, request.kind) if request.kind else None,
            label=request.label, owner=request.owner,
        )
        return pb.ListStrategiesResponse(
            strategies=[strategy_to_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateStrategy(self, request: pb.UpdateStrategyRequest, context: Any) -> Any:
        s = request.strategy
        updated = await self._app.update_strategy(
            name=s.name,
            values={"display_name": s.display_name, "description": s.description,
                    "labels": dict(s.labels)},
            mask=list(request.update_mask.paths), etag=s.etag,
        )
        return strategy_to_pb(updated)

    async def DeleteStrategy(self, request: pb.DeleteStrategyRequest, context: Any) -> Any:
        await self._app.delete_strategy(name=request.name, etag=request.etag)
        return empty_pb2.Empty()

    async def CreateStrategyVersion(
        self, request: pb.CreateStrategyVersionRequest, context: Any
    ) -> Any:
        params = json_format.MessageToDict(
            request.version.parameters, always_print_fields_with_no_presence=True
        )
        version, _created = await self._app.create_version(
            parent=request.parent, parameters=params,
            description=request.version.description, creator=get_caller().subject,
        )
        return version_to_pb(version)

    async def GetStrategyVersion(self, request: pb.GetStrategyVersionRequest, context: Any) -> Any:
        return version_to_pb(await self._app.get_version(request.name))

    async def ListStrategyVersions(
        self, request: pb.ListStrategyVersionsRequest, context: Any
    ) -> Any:
        page = await self._app.list_versions(
            parent=request.parent, page_size=request.page_size, page_token=request.page_token,
            state=_enum_name(pb.VersionState, request.state) if request.state else None,
        )
        return pb.ListStrategyVersionsResponse(
            versions=[version_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def DiffStrategyVersions(
        self, request: pb.DiffStrategyVersionsRequest, context: Any
    ) -> Any:
        changes = await self._app.diff_versions(request.name, request.other)
        return pb.DiffStrategyVersionsResponse(
            changes=[
                pb.ParameterChange(
                    path=c.path,
                    change_type=pb.ParameterChange.ChangeType.Value(f"CHANGE_TYPE_{c.change_type}"),
                    old_value=_value(c.old_value), new_value=_value(c.new_value),
                )
                for c in changes
            ],
            identical=not changes,
        )

    async def TransitionStrategyVersion(
        self, request: pb.TransitionStrategyVersionRequest, context: Any
    ) -> Any:
        version = await self._app.transition(
            name=request.name, target=_enum_name(pb.VersionState, request.state),
            reason=request.reason, actor=get_caller().subject,
        )
        return version_to_pb(version)

    async def CreateDeployment(self, request: pb.CreateDeploymentRequest, context: Any) -> Any:
        d = request.deployment
        created = await self._app.create_deployment(
            parent=request.parent, version=d.version,
            environment=_enum_name(pb.DeploymentEnvironment, d.environment), notes=d.notes,
            creator=get_caller().subject, request_id=request.request_id,
        )
        return deployment_to_pb(created)

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Any) -> Any:
        return deployment_to_pb(await self._app.get_deployment(request.name))

    async def ListDeployments(self, request: pb.ListDeploymentsRequest, context: Any) -> Any:
        page = await self._app.list_deployments(
            parent=request.parent, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeploymentsResponse(
            deployments=[deployment_to_pb(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    async def StopDeployment(self, request: pb.StopDeploymentRequest, context: Any) -> Any:
        return deployment_to_pb(
            await self._app.stop_deployment(name=request.name, reason=request.reason)
        )
