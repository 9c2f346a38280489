import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StrategyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_KIND_UNSPECIFIED: _ClassVar[StrategyKind]
    STRATEGY_KIND_CROSS_EXCHANGE_SPREAD: _ClassVar[StrategyKind]
    STRATEGY_KIND_PEG_REVERSION: _ClassVar[StrategyKind]
    STRATEGY_KIND_TRIANGULAR: _ClassVar[StrategyKind]

class VersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATE_UNSPECIFIED: _ClassVar[VersionState]
    VERSION_STATE_DRAFT: _ClassVar[VersionState]
    VERSION_STATE_BACKTESTED: _ClassVar[VersionState]
    VERSION_STATE_APPROVED: _ClassVar[VersionState]
    VERSION_STATE_DEPLOYED: _ClassVar[VersionState]
    VERSION_STATE_RETIRED: _ClassVar[VersionState]

class DeploymentEnvironment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_ENVIRONMENT_UNSPECIFIED: _ClassVar[DeploymentEnvironment]
    DEPLOYMENT_ENVIRONMENT_PAPER: _ClassVar[DeploymentEnvironment]
    DEPLOYMENT_ENVIRONMENT_LIVE: _ClassVar[DeploymentEnvironment]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ACTIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_STOPPED: _ClassVar[DeploymentState]
STRATEGY_KIND_UNSPECIFIED: StrategyKind
STRATEGY_KIND_CROSS_EXCHANGE_SPREAD: StrategyKind
STRATEGY_KIND_PEG_REVERSION: StrategyKind
STRATEGY_KIND_TRIANGULAR: StrategyKind
VERSION_STATE_UNSPECIFIED: VersionState
VERSION_STATE_DRAFT: VersionState
VERSION_STATE_BACKTESTED: VersionState
VERSION_STATE_APPROVED: VersionState
VERSION_STATE_DEPLOYED: VersionState
VERSION_STATE_RETIRED: VersionState
DEPLOYMENT_ENVIRONMENT_UNSPECIFIED: DeploymentEnvironment
DEPLOYMENT_ENVIRONMENT_PAPER: DeploymentEnvironment
DEPLOYMENT_ENVIRONMENT_LIVE: DeploymentEnvironment
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_ACTIVE: DeploymentState
DEPLOYMENT_STATE_STOPPED: DeploymentState

class StrategyKindInfo(_message.Message):
    __slots__ = ("name", "kind", "display_name", "description", "parameter_schema")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: StrategyKind
    display_name: str
    description: str
    parameter_schema: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[StrategyKind, str]] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., parameter_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CrossExchangeSpreadParams(_message.Message):
    __slots__ = ("symbol", "venue_a", "venue_b", "entry_bps", "exit_bps", "quantity", "max_holding_bars")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    VENUE_A_FIELD_NUMBER: _ClassVar[int]
    VENUE_B_FIELD_NUMBER: _ClassVar[int]
    ENTRY_BPS_FIELD_NUMBER: _ClassVar[int]
    EXIT_BPS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_HOLDING_BARS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    venue_a: str
    venue_b: str
    entry_bps: float
    exit_bps: float
    quantity: float
    max_holding_bars: int
    def __init__(self, symbol: _Optional[str] = ..., venue_a: _Optional[str] = ..., venue_b: _Optional[str] = ..., entry_bps: _Optional[float] = ..., exit_bps: _Optional[float] = ..., quantity: _Optional[float] = ..., max_holding_bars: _Optional[int] = ...) -> None: ...

class PegReversionParams(_message.Message):
    __slots__ = ("venue", "symbol", "peg", "entry_bps", "exit_bps", "quantity", "stop_loss_bps", "max_holding_bars")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PEG_FIELD_NUMBER: _ClassVar[int]
    ENTRY_BPS_FIELD_NUMBER: _ClassVar[int]
    EXIT_BPS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_HOLDING_BARS_FIELD_NUMBER: _ClassVar[int]
    venue: str
    symbol: str
    peg: float
    entry_bps: float
    exit_bps: float
    quantity: float
    stop_loss_bps: float
    max_holding_bars: int
    def __init__(self, venue: _Optional[str] = ..., symbol: _Optional[str] = ..., peg: _Optional[float] = ..., entry_bps: _Optional[float] = ..., exit_bps: _Optional[float] = ..., quantity: _Optional[float] = ..., stop_loss_bps: _Optional[float] = ..., max_holding_bars: _Optional[int] = ...) -> None: ...

class TriangularParams(_message.Message):
    __slots__ = ("venue", "symbols", "min_edge_bps", "notional", "cooldown_bars")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    MIN_EDGE_BPS_FIELD_NUMBER: _ClassVar[int]
    NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_BARS_FIELD_NUMBER: _ClassVar[int]
    venue: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    min_edge_bps: float
    notional: float
    cooldown_bars: int
    def __init__(self, venue: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., min_edge_bps: _Optional[float] = ..., notional: _Optional[float] = ..., cooldown_bars: _Optional[int] = ...) -> None: ...

class StrategyParameters(_message.Message):
    __slots__ = ("cross_exchange_spread", "peg_reversion", "triangular")
    CROSS_EXCHANGE_SPREAD_FIELD_NUMBER: _ClassVar[int]
    PEG_REVERSION_FIELD_NUMBER: _ClassVar[int]
    TRIANGULAR_FIELD_NUMBER: _ClassVar[int]
    cross_exchange_spread: CrossExchangeSpreadParams
    peg_reversion: PegReversionParams
    triangular: TriangularParams
    def __init__(self, cross_exchange_spread: _Optional[_Union[CrossExchangeSpreadParams, _Mapping]] = ..., peg_reversion: _Optional[_Union[PegReversionParams, _Mapping]] = ..., triangular: _Optional[_Union[TriangularParams, _Mapping]] = ...) -> None: ...

class Strategy(_message.Message):
    __slots__ = ("name", "display_name", "description", "kind", "labels", "creator", "create_time", "update_time", "latest_version_id", "version_count", "etag", "owner")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    kind: StrategyKind
    labels: _containers.ScalarMap[str, str]
    creator: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    latest_version_id: str
    version_count: int
    etag: str
    owner: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., kind: _Optional[_Union[StrategyKind, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_version_id: _Optional[str] = ..., version_count: _Optional[int] = ..., etag: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class StrategyVersion(_message.Message):
    __slots__ = ("name", "version_id", "parameters", "description", "state", "canonical_parameters", "content_hash", "sequence", "creator", "create_time", "state_time", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_id: str
    parameters: StrategyParameters
    description: str
    state: VersionState
    canonical_parameters: str
    content_hash: str
    sequence: int
    creator: str
    create_time: _timestamp_pb2.Timestamp
    state_time: _timestamp_pb2.Timestamp
    owner: str
    def __init__(self, name: _Optional[str] = ..., version_id: _Optional[str] = ..., parameters: _Optional[_Union[StrategyParameters, _Mapping]] = ..., description: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., canonical_parameters: _Optional[str] = ..., content_hash: _Optional[str] = ..., sequence: _Optional[int] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "version", "environment", "state", "notes", "creator", "create_time", "stop_time", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STOP_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    environment: DeploymentEnvironment
    state: DeploymentState
    notes: str
    creator: str
    create_time: _timestamp_pb2.Timestamp
    stop_time: _timestamp_pb2.Timestamp
    owner: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., environment: _Optional[_Union[DeploymentEnvironment, str]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., notes: _Optional[str] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stop_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ...) -> None: ...

class ListStrategyKindsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStrategyKindsResponse(_message.Message):
    __slots__ = ("strategy_kinds",)
    STRATEGY_KINDS_FIELD_NUMBER: _ClassVar[int]
    strategy_kinds: _containers.RepeatedCompositeFieldContainer[StrategyKindInfo]
    def __init__(self, strategy_kinds: _Optional[_Iterable[_Union[StrategyKindInfo, _Mapping]]] = ...) -> None: ...

class GetStrategyKindRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateStrategyRequest(_message.Message):
    __slots__ = ("strategy", "strategy_id", "request_id")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    strategy: Strategy
    strategy_id: str
    request_id: str
    def __init__(self, strategy: _Optional[_Union[Strategy, _Mapping]] = ..., strategy_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetStrategyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListStrategiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "kind", "label", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    kind: StrategyKind
    label: str
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., kind: _Optional[_Union[StrategyKind, str]] = ..., label: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListStrategiesResponse(_message.Message):
    __slots__ = ("strategies", "next_page_token")
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedCompositeFieldContainer[Strategy]
    next_page_token: str
    def __init__(self, strategies: _Optional[_Iterable[_Union[Strategy, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateStrategyRequest(_message.Message):
    __slots__ = ("strategy", "update_mask")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    strategy: Strategy
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, strategy: _Optional[_Union[Strategy, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteStrategyRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateStrategyVersionRequest(_message.Message):
    __slots__ = ("parent", "version")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    version: StrategyVersion
    def __init__(self, parent: _Optional[str] = ..., version: _Optional[_Union[StrategyVersion, _Mapping]] = ...) -> None: ...

class GetStrategyVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListStrategyVersionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "state")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    state: VersionState
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ...) -> None: ...

class ListStrategyVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[StrategyVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[StrategyVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiffStrategyVersionsRequest(_message.Message):
    __slots__ = ("name", "other")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    name: str
    other: str
    def __init__(self, name: _Optional[str] = ..., other: _Optional[str] = ...) -> None: ...

class ParameterChange(_message.Message):
    __slots__ = ("path", "change_type", "old_value", "new_value")
    class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_TYPE_UNSPECIFIED: _ClassVar[ParameterChange.ChangeType]
        CHANGE_TYPE_ADDED: _ClassVar[ParameterChange.ChangeType]
        CHANGE_TYPE_REMOVED: _ClassVar[ParameterChange.ChangeType]
        CHANGE_TYPE_MODIFIED: _ClassVar[ParameterChange.ChangeType]
    CHANGE_TYPE_UNSPECIFIED: ParameterChange.ChangeType
    CHANGE_TYPE_ADDED: ParameterChange.ChangeType
    CHANGE_TYPE_REMOVED: ParameterChange.ChangeType
    CHANGE_TYPE_MODIFIED: ParameterChange.ChangeType
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    path: str
    change_type: ParameterChange.ChangeType
    old_value: _struct_pb2.Value
    new_value: _struct_pb2.Value
    def __init__(self, path: _Optional[str] = ..., change_type: _Optional[_Union[ParameterChange.ChangeType, str]] = ..., old_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., new_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class DiffStrategyVersionsResponse(_message.Message):
    __slots__ = ("changes", "identical")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    IDENTICAL_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ParameterChange]
    identical: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[ParameterChange, _Mapping]]] = ..., identical: _Optional[bool] = ...) -> None: ...

class TransitionStrategyVersionRequest(_message.Message):
    __slots__ = ("name", "state", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: VersionState
    reason: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("parent", "deployment", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    deployment: Deployment
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StopDeploymentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
