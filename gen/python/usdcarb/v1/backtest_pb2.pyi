import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from usdcarb.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FillPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILL_POLICY_UNSPECIFIED: _ClassVar[FillPolicy]
    FILL_POLICY_NEXT_BAR: _ClassVar[FillPolicy]
    FILL_POLICY_SAME_BAR: _ClassVar[FillPolicy]

class LegMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEG_MODE_UNSPECIFIED: _ClassVar[LegMode]
    LEG_MODE_ALL_OR_NOTHING: _ClassVar[LegMode]
    LEG_MODE_INDEPENDENT: _ClassVar[LegMode]

class OneLegPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ONE_LEG_POLICY_UNSPECIFIED: _ClassVar[OneLegPolicy]
    ONE_LEG_POLICY_HEDGE: _ClassVar[OneLegPolicy]
    ONE_LEG_POLICY_RETRY: _ClassVar[OneLegPolicy]
    ONE_LEG_POLICY_UNWIND: _ClassVar[OneLegPolicy]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_TAKER: _ClassVar[OrderType]
    ORDER_TYPE_MAKER: _ClassVar[OrderType]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class PaperRunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAPER_RUN_STATE_UNSPECIFIED: _ClassVar[PaperRunState]
    PAPER_RUN_STATE_RUNNING: _ClassVar[PaperRunState]
    PAPER_RUN_STATE_STOPPED: _ClassVar[PaperRunState]
    PAPER_RUN_STATE_FAILED: _ClassVar[PaperRunState]

class FillDifferenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILL_DIFFERENCE_KIND_UNSPECIFIED: _ClassVar[FillDifferenceKind]
    FILL_DIFFERENCE_KIND_MISSING_IN_PAPER: _ClassVar[FillDifferenceKind]
    FILL_DIFFERENCE_KIND_MISSING_IN_BACKTEST: _ClassVar[FillDifferenceKind]
    FILL_DIFFERENCE_KIND_TIME: _ClassVar[FillDifferenceKind]
    FILL_DIFFERENCE_KIND_PRICE_OR_QUANTITY: _ClassVar[FillDifferenceKind]

class DivergenceReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERGENCE_REASON_UNSPECIFIED: _ClassVar[DivergenceReason]
    DIVERGENCE_REASON_LATE_BAR: _ClassVar[DivergenceReason]
    DIVERGENCE_REASON_GAP: _ClassVar[DivergenceReason]
    DIVERGENCE_REASON_REVISED_BAR: _ClassVar[DivergenceReason]
    DIVERGENCE_REASON_CARRIED_OVER: _ClassVar[DivergenceReason]
FILL_POLICY_UNSPECIFIED: FillPolicy
FILL_POLICY_NEXT_BAR: FillPolicy
FILL_POLICY_SAME_BAR: FillPolicy
LEG_MODE_UNSPECIFIED: LegMode
LEG_MODE_ALL_OR_NOTHING: LegMode
LEG_MODE_INDEPENDENT: LegMode
ONE_LEG_POLICY_UNSPECIFIED: OneLegPolicy
ONE_LEG_POLICY_HEDGE: OneLegPolicy
ONE_LEG_POLICY_RETRY: OneLegPolicy
ONE_LEG_POLICY_UNWIND: OneLegPolicy
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_TAKER: OrderType
ORDER_TYPE_MAKER: OrderType
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
PAPER_RUN_STATE_UNSPECIFIED: PaperRunState
PAPER_RUN_STATE_RUNNING: PaperRunState
PAPER_RUN_STATE_STOPPED: PaperRunState
PAPER_RUN_STATE_FAILED: PaperRunState
FILL_DIFFERENCE_KIND_UNSPECIFIED: FillDifferenceKind
FILL_DIFFERENCE_KIND_MISSING_IN_PAPER: FillDifferenceKind
FILL_DIFFERENCE_KIND_MISSING_IN_BACKTEST: FillDifferenceKind
FILL_DIFFERENCE_KIND_TIME: FillDifferenceKind
FILL_DIFFERENCE_KIND_PRICE_OR_QUANTITY: FillDifferenceKind
DIVERGENCE_REASON_UNSPECIFIED: DivergenceReason
DIVERGENCE_REASON_LATE_BAR: DivergenceReason
DIVERGENCE_REASON_GAP: DivergenceReason
DIVERGENCE_REASON_REVISED_BAR: DivergenceReason
DIVERGENCE_REASON_CARRIED_OVER: DivergenceReason

class SlippageModel(_message.Message):
    __slots__ = ("fixed_bps", "volume_impact_bps")
    FIXED_BPS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_IMPACT_BPS_FIELD_NUMBER: _ClassVar[int]
    fixed_bps: float
    volume_impact_bps: float
    def __init__(self, fixed_bps: _Optional[float] = ..., volume_impact_bps: _Optional[float] = ...) -> None: ...

class AssetAmount(_message.Message):
    __slots__ = ("asset", "amount")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    asset: str
    amount: float
    def __init__(self, asset: _Optional[str] = ..., amount: _Optional[float] = ...) -> None: ...

class VenueConfig(_message.Message):
    __slots__ = ("venue", "maker_fee_bps", "taker_fee_bps", "slippage", "latency_bars", "initial_balances", "min_balances", "latency_ms", "participation_cap")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BARS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BALANCES_FIELD_NUMBER: _ClassVar[int]
    MIN_BALANCES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPATION_CAP_FIELD_NUMBER: _ClassVar[int]
    venue: str
    maker_fee_bps: float
    taker_fee_bps: float
    slippage: SlippageModel
    latency_bars: int
    initial_balances: _containers.RepeatedCompositeFieldContainer[AssetAmount]
    min_balances: _containers.RepeatedCompositeFieldContainer[AssetAmount]
    latency_ms: int
    participation_cap: float
    def __init__(self, venue: _Optional[str] = ..., maker_fee_bps: _Optional[float] = ..., taker_fee_bps: _Optional[float] = ..., slippage: _Optional[_Union[SlippageModel, _Mapping]] = ..., latency_bars: _Optional[int] = ..., initial_balances: _Optional[_Iterable[_Union[AssetAmount, _Mapping]]] = ..., min_balances: _Optional[_Iterable[_Union[AssetAmount, _Mapping]]] = ..., latency_ms: _Optional[int] = ..., participation_cap: _Optional[float] = ...) -> None: ...

class ExecutionConfig(_message.Message):
    __slots__ = ("leg_mode", "one_leg_policy", "retry_bars", "order_type", "maker_timeout_bars")
    LEG_MODE_FIELD_NUMBER: _ClassVar[int]
    ONE_LEG_POLICY_FIELD_NUMBER: _ClassVar[int]
    RETRY_BARS_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAKER_TIMEOUT_BARS_FIELD_NUMBER: _ClassVar[int]
    leg_mode: LegMode
    one_leg_policy: OneLegPolicy
    retry_bars: int
    order_type: OrderType
    maker_timeout_bars: int
    def __init__(self, leg_mode: _Optional[_Union[LegMode, str]] = ..., one_leg_policy: _Optional[_Union[OneLegPolicy, str]] = ..., retry_bars: _Optional[int] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., maker_timeout_bars: _Optional[int] = ...) -> None: ...

class RobustnessSpec(_message.Message):
    __slots__ = ("enabled", "extra_latency_bars", "cost_multipliers")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTRA_LATENCY_BARS_FIELD_NUMBER: _ClassVar[int]
    COST_MULTIPLIERS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    extra_latency_bars: _containers.RepeatedScalarFieldContainer[int]
    cost_multipliers: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, enabled: _Optional[bool] = ..., extra_latency_bars: _Optional[_Iterable[int]] = ..., cost_multipliers: _Optional[_Iterable[float]] = ...) -> None: ...

class TransferRoute(_message.Message):
    __slots__ = ("from_venue", "to_venue", "asset", "fee", "delay_bars")
    FROM_VENUE_FIELD_NUMBER: _ClassVar[int]
    TO_VENUE_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    DELAY_BARS_FIELD_NUMBER: _ClassVar[int]
    from_venue: str
    to_venue: str
    asset: str
    fee: float
    delay_bars: int
    def __init__(self, from_venue: _Optional[str] = ..., to_venue: _Optional[str] = ..., asset: _Optional[str] = ..., fee: _Optional[float] = ..., delay_bars: _Optional[int] = ...) -> None: ...

class BacktestConfig(_message.Message):
    __slots__ = ("range", "timeframe", "venues", "transfers", "fill_policy", "quote_asset", "periods_per_year", "allow_unusable_data", "execution", "robustness")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    VENUES_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    FILL_POLICY_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    PERIODS_PER_YEAR_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNUSABLE_DATA_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    ROBUSTNESS_FIELD_NUMBER: _ClassVar[int]
    range: _common_pb2.TimeRange
    timeframe: str
    venues: _containers.RepeatedCompositeFieldContainer[VenueConfig]
    transfers: _containers.RepeatedCompositeFieldContainer[TransferRoute]
    fill_policy: FillPolicy
    quote_asset: str
    periods_per_year: float
    allow_unusable_data: bool
    execution: ExecutionConfig
    robustness: RobustnessSpec
    def __init__(self, range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., timeframe: _Optional[str] = ..., venues: _Optional[_Iterable[_Union[VenueConfig, _Mapping]]] = ..., transfers: _Optional[_Iterable[_Union[TransferRoute, _Mapping]]] = ..., fill_policy: _Optional[_Union[FillPolicy, str]] = ..., quote_asset: _Optional[str] = ..., periods_per_year: _Optional[float] = ..., allow_unusable_data: _Optional[bool] = ..., execution: _Optional[_Union[ExecutionConfig, _Mapping]] = ..., robustness: _Optional[_Union[RobustnessSpec, _Mapping]] = ...) -> None: ...

class PnlAttribution(_message.Message):
    __slots__ = ("trading_pnl", "inventory_revaluation", "fees", "slippage", "transfer_costs", "legging", "total_pnl")
    TRADING_PNL_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_REVALUATION_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_COSTS_FIELD_NUMBER: _ClassVar[int]
    LEGGING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PNL_FIELD_NUMBER: _ClassVar[int]
    trading_pnl: float
    inventory_revaluation: float
    fees: float
    slippage: float
    transfer_costs: float
    legging: float
    total_pnl: float
    def __init__(self, trading_pnl: _Optional[float] = ..., inventory_revaluation: _Optional[float] = ..., fees: _Optional[float] = ..., slippage: _Optional[float] = ..., transfer_costs: _Optional[float] = ..., legging: _Optional[float] = ..., total_pnl: _Optional[float] = ...) -> None: ...

class BacktestMetrics(_message.Message):
    __slots__ = ("total_return", "annualized_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_duration", "win_rate", "profit_factor", "expectancy", "round_trips", "avg_round_trip_duration", "turnover", "fees_paid", "exposure", "total_pnl", "slippage_paid", "theoretical_edge_bps", "realized_edge_bps", "capture_rate", "inventory_utilization", "rejected_fills", "attribution", "legged_trades", "fill_ratio", "partial_fills", "excess_return", "excess_pnl", "excess_sharpe", "excess_max_drawdown", "excess_volatility")
    class InventoryUtilizationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOTAL_RETURN_FIELD_NUMBER: _ClassVar[int]
    ANNUALIZED_RETURN_FIELD_NUMBER: _ClassVar[int]
    VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    SHARPE_FIELD_NUMBER: _ClassVar[int]
    SORTINO_FIELD_NUMBER: _ClassVar[int]
    CALMAR_FIELD_NUMBER: _ClassVar[int]
    MAX_DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    MAX_DRAWDOWN_DURATION_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    PROFIT_FACTOR_FIELD_NUMBER: _ClassVar[int]
    EXPECTANCY_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIPS_FIELD_NUMBER: _ClassVar[int]
    AVG_ROUND_TRIP_DURATION_FIELD_NUMBER: _ClassVar[int]
    TURNOVER_FIELD_NUMBER: _ClassVar[int]
    FEES_PAID_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PNL_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_PAID_FIELD_NUMBER: _ClassVar[int]
    THEORETICAL_EDGE_BPS_FIELD_NUMBER: _ClassVar[int]
    REALIZED_EDGE_BPS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_RATE_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FILLS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    LEGGED_TRADES_FIELD_NUMBER: _ClassVar[int]
    FILL_RATIO_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FILLS_FIELD_NUMBER: _ClassVar[int]
    EXCESS_RETURN_FIELD_NUMBER: _ClassVar[int]
    EXCESS_PNL_FIELD_NUMBER: _ClassVar[int]
    EXCESS_SHARPE_FIELD_NUMBER: _ClassVar[int]
    EXCESS_MAX_DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    EXCESS_VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    total_return: float
    annualized_return: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration: _duration_pb2.Duration
    win_rate: float
    profit_factor: float
    expectancy: float
    round_trips: int
    avg_round_trip_duration: _duration_pb2.Duration
    turnover: float
    fees_paid: float
    exposure: float
    total_pnl: float
    slippage_paid: float
    theoretical_edge_bps: float
    realized_edge_bps: float
    capture_rate: float
    inventory_utilization: _containers.ScalarMap[str, float]
    rejected_fills: int
    attribution: PnlAttribution
    legged_trades: int
    fill_ratio: float
    partial_fills: int
    excess_return: float
    excess_pnl: float
    excess_sharpe: float
    excess_max_drawdown: float
    excess_volatility: float
    def __init__(self, total_return: _Optional[float] = ..., annualized_return: _Optional[float] = ..., volatility: _Optional[float] = ..., sharpe: _Optional[float] = ..., sortino: _Optional[float] = ..., calmar: _Optional[float] = ..., max_drawdown: _Optional[float] = ..., max_drawdown_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., win_rate: _Optional[float] = ..., profit_factor: _Optional[float] = ..., expectancy: _Optional[float] = ..., round_trips: _Optional[int] = ..., avg_round_trip_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., turnover: _Optional[float] = ..., fees_paid: _Optional[float] = ..., exposure: _Optional[float] = ..., total_pnl: _Optional[float] = ..., slippage_paid: _Optional[float] = ..., theoretical_edge_bps: _Optional[float] = ..., realized_edge_bps: _Optional[float] = ..., capture_rate: _Optional[float] = ..., inventory_utilization: _Optional[_Mapping[str, float]] = ..., rejected_fills: _Optional[int] = ..., attribution: _Optional[_Union[PnlAttribution, _Mapping]] = ..., legged_trades: _Optional[int] = ..., fill_ratio: _Optional[float] = ..., partial_fills: _Optional[int] = ..., excess_return: _Optional[float] = ..., excess_pnl: _Optional[float] = ..., excess_sharpe: _Optional[float] = ..., excess_max_drawdown: _Optional[float] = ..., excess_volatility: _Optional[float] = ...) -> None: ...

class RobustnessScenario(_message.Message):
    __slots__ = ("label", "extra_latency_bars", "cost_multiplier", "metrics")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_LATENCY_BARS_FIELD_NUMBER: _ClassVar[int]
    COST_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    label: str
    extra_latency_bars: int
    cost_multiplier: float
    metrics: BacktestMetrics
    def __init__(self, label: _Optional[str] = ..., extra_latency_bars: _Optional[int] = ..., cost_multiplier: _Optional[float] = ..., metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ...) -> None: ...

class RobustnessPanel(_message.Message):
    __slots__ = ("scenarios",)
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    scenarios: _containers.RepeatedCompositeFieldContainer[RobustnessScenario]
    def __init__(self, scenarios: _Optional[_Iterable[_Union[RobustnessScenario, _Mapping]]] = ...) -> None: ...

class BacktestResult(_message.Message):
    __slots__ = ("metrics", "trade_count", "bars", "fingerprint", "optimistic_fills", "elapsed", "baseline_metrics", "robustness", "execution_model")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    OPTIMISTIC_FILLS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_METRICS_FIELD_NUMBER: _ClassVar[int]
    ROBUSTNESS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_MODEL_FIELD_NUMBER: _ClassVar[int]
    metrics: BacktestMetrics
    trade_count: int
    bars: int
    fingerprint: Fingerprint
    optimistic_fills: bool
    elapsed: _duration_pb2.Duration
    baseline_metrics: BacktestMetrics
    robustness: RobustnessPanel
    execution_model: str
    def __init__(self, metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., trade_count: _Optional[int] = ..., bars: _Optional[int] = ..., fingerprint: _Optional[_Union[Fingerprint, _Mapping]] = ..., optimistic_fills: _Optional[bool] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., baseline_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., robustness: _Optional[_Union[RobustnessPanel, _Mapping]] = ..., execution_model: _Optional[str] = ...) -> None: ...

class Fingerprint(_message.Message):
    __slots__ = ("strategy_version_id", "data_snapshot_hash", "config_hash", "engine_version", "digest")
    STRATEGY_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SNAPSHOT_HASH_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    strategy_version_id: str
    data_snapshot_hash: str
    config_hash: str
    engine_version: str
    digest: str
    def __init__(self, strategy_version_id: _Optional[str] = ..., data_snapshot_hash: _Optional[str] = ..., config_hash: _Optional[str] = ..., engine_version: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class Backtest(_message.Message):
    __slots__ = ("name", "strategy_version", "config", "state", "progress", "result", "error", "creator", "create_time", "start_time", "end_time", "attempts", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy_version: str
    config: BacktestConfig
    state: _common_pb2.JobState
    progress: _common_pb2.Progress
    result: BacktestResult
    error: _status_pb2.Status
    creator: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    attempts: int
    owner: str
    def __init__(self, name: _Optional[str] = ..., strategy_version: _Optional[str] = ..., config: _Optional[_Union[BacktestConfig, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[BacktestResult, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class BacktestProgress(_message.Message):
    __slots__ = ("progress", "bar_time", "equity", "partial_metrics", "queue")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    BAR_TIME_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_METRICS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    bar_time: _timestamp_pb2.Timestamp
    equity: float
    partial_metrics: BacktestMetrics
    queue: QueuePosition
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., bar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., equity: _Optional[float] = ..., partial_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., queue: _Optional[_Union[QueuePosition, _Mapping]] = ...) -> None: ...

class QueuePosition(_message.Message):
    __slots__ = ("ahead", "estimate", "warming_up")
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    WARMING_UP_FIELD_NUMBER: _ClassVar[int]
    ahead: int
    estimate: _duration_pb2.Duration
    warming_up: bool
    def __init__(self, ahead: _Optional[int] = ..., estimate: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., warming_up: _Optional[bool] = ...) -> None: ...

class BacktestCompleted(_message.Message):
    __slots__ = ("outcome", "result", "equity_curve")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EQUITY_CURVE_FIELD_NUMBER: _ClassVar[int]
    outcome: _common_pb2.Outcome
    result: BacktestResult
    equity_curve: EquityCurve
    def __init__(self, outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ..., result: _Optional[_Union[BacktestResult, _Mapping]] = ..., equity_curve: _Optional[_Union[EquityCurve, _Mapping]] = ...) -> None: ...

class BacktestEvent(_message.Message):
    __slots__ = ("backtest", "sequence", "state", "progress", "completed")
    BACKTEST_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    backtest: str
    sequence: int
    state: _common_pb2.JobState
    progress: BacktestProgress
    completed: BacktestCompleted
    def __init__(self, backtest: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[BacktestProgress, _Mapping]] = ..., completed: _Optional[_Union[BacktestCompleted, _Mapping]] = ...) -> None: ...

class RunBacktestRequest(_message.Message):
    __slots__ = ("strategy_version", "config", "progress_interval", "request_id")
    STRATEGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    strategy_version: str
    config: BacktestConfig
    progress_interval: _duration_pb2.Duration
    request_id: str
    def __init__(self, strategy_version: _Optional[str] = ..., config: _Optional[_Union[BacktestConfig, _Mapping]] = ..., progress_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateBacktestRequest(_message.Message):
    __slots__ = ("backtest", "request_id")
    BACKTEST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    backtest: Backtest
    request_id: str
    def __init__(self, backtest: _Optional[_Union[Backtest, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetBacktestRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListBacktestsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "strategy", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _common_pb2.JobState
    strategy: str
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., strategy: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListBacktestsResponse(_message.Message):
    __slots__ = ("backtests", "next_page_token")
    BACKTESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backtests: _containers.RepeatedCompositeFieldContainer[Backtest]
    next_page_token: str
    def __init__(self, backtests: _Optional[_Iterable[_Union[Backtest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelBacktestRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchBacktestRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("time", "venue", "symbol", "side", "quantity", "price", "fee", "slippage", "round_trip", "signal_bar", "signal_edge_bps")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIP_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_BAR_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_EDGE_BPS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    venue: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    slippage: float
    round_trip: int
    signal_bar: int
    signal_edge_bps: float
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., venue: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., fee: _Optional[float] = ..., slippage: _Optional[float] = ..., round_trip: _Optional[int] = ..., signal_bar: _Optional[int] = ..., signal_edge_bps: _Optional[float] = ...) -> None: ...

class ListBacktestTradesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBacktestTradesResponse(_message.Message):
    __slots__ = ("trades", "next_page_token")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    next_page_token: str
    def __init__(self, trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetEquityCurveRequest(_message.Message):
    __slots__ = ("name", "max_points", "layout", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_points: int
    layout: _common_pb2.ColumnLayout
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., max_points: _Optional[int] = ..., layout: _Optional[_Union[_common_pb2.ColumnLayout, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class EquityCurve(_message.Message):
    __slots__ = ("name", "time_ms", "equity", "drawdown", "exposure", "time_ms_le", "equity_le", "drawdown_le", "exposure_le", "count", "total_points", "reduced", "offset", "next_page_token", "baseline", "baseline_le")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_LE_FIELD_NUMBER: _ClassVar[int]
    EQUITY_LE_FIELD_NUMBER: _ClassVar[int]
    DRAWDOWN_LE_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_LE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    REDUCED_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LE_FIELD_NUMBER: _ClassVar[int]
    name: str
    time_ms: _containers.RepeatedScalarFieldContainer[int]
    equity: _containers.RepeatedScalarFieldContainer[float]
    drawdown: _containers.RepeatedScalarFieldContainer[float]
    exposure: _containers.RepeatedScalarFieldContainer[float]
    time_ms_le: bytes
    equity_le: bytes
    drawdown_le: bytes
    exposure_le: bytes
    count: int
    total_points: int
    reduced: bool
    offset: int
    next_page_token: str
    baseline: _containers.RepeatedScalarFieldContainer[float]
    baseline_le: bytes
    def __init__(self, name: _Optional[str] = ..., time_ms: _Optional[_Iterable[int]] = ..., equity: _Optional[_Iterable[float]] = ..., drawdown: _Optional[_Iterable[float]] = ..., exposure: _Optional[_Iterable[float]] = ..., time_ms_le: _Optional[bytes] = ..., equity_le: _Optional[bytes] = ..., drawdown_le: _Optional[bytes] = ..., exposure_le: _Optional[bytes] = ..., count: _Optional[int] = ..., total_points: _Optional[int] = ..., reduced: _Optional[bool] = ..., offset: _Optional[int] = ..., next_page_token: _Optional[str] = ..., baseline: _Optional[_Iterable[float]] = ..., baseline_le: _Optional[bytes] = ...) -> None: ...

class ParameterAxis(_message.Message):
    __slots__ = ("path", "values")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    path: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, path: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class WalkForwardSpec(_message.Message):
    __slots__ = ("in_sample", "out_of_sample", "step")
    IN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    in_sample: _duration_pb2.Duration
    out_of_sample: _duration_pb2.Duration
    step: _duration_pb2.Duration
    def __init__(self, in_sample: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., out_of_sample: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CrossValidationSpec(_message.Message):
    __slots__ = ("folds", "purge", "embargo")
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_FIELD_NUMBER: _ClassVar[int]
    folds: int
    purge: _duration_pb2.Duration
    embargo: _duration_pb2.Duration
    def __init__(self, folds: _Optional[int] = ..., purge: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., embargo: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CrossValidationFold(_message.Message):
    __slots__ = ("index", "test", "train", "chosen_parameters", "train_metrics", "test_metrics")
    class ChosenParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_METRICS_FIELD_NUMBER: _ClassVar[int]
    TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    index: int
    test: _common_pb2.TimeRange
    train: _containers.RepeatedCompositeFieldContainer[_common_pb2.TimeRange]
    chosen_parameters: _containers.ScalarMap[str, float]
    train_metrics: BacktestMetrics
    test_metrics: BacktestMetrics
    def __init__(self, index: _Optional[int] = ..., test: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., train: _Optional[_Iterable[_Union[_common_pb2.TimeRange, _Mapping]]] = ..., chosen_parameters: _Optional[_Mapping[str, float]] = ..., train_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., test_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ...) -> None: ...

class OutOfSampleSummary(_message.Message):
    __slots__ = ("objective", "mean_in_sample", "mean_out_of_sample", "decay", "folds_decayed", "folds")
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MEAN_IN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    MEAN_OUT_OF_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    FOLDS_DECAYED_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    objective: str
    mean_in_sample: float
    mean_out_of_sample: float
    decay: float
    folds_decayed: int
    folds: int
    def __init__(self, objective: _Optional[str] = ..., mean_in_sample: _Optional[float] = ..., mean_out_of_sample: _Optional[float] = ..., decay: _Optional[float] = ..., folds_decayed: _Optional[int] = ..., folds: _Optional[int] = ...) -> None: ...

class DeflatedSharpe(_message.Message):
    __slots__ = ("sharpe", "trials", "trials_variance", "expected_max_sharpe", "skewness", "kurtosis", "observations", "deflated_sharpe", "annualized_sharpe")
    SHARPE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    TRIALS_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_MAX_SHARPE_FIELD_NUMBER: _ClassVar[int]
    SKEWNESS_FIELD_NUMBER: _ClassVar[int]
    KURTOSIS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DEFLATED_SHARPE_FIELD_NUMBER: _ClassVar[int]
    ANNUALIZED_SHARPE_FIELD_NUMBER: _ClassVar[int]
    sharpe: float
    trials: int
    trials_variance: float
    expected_max_sharpe: float
    skewness: float
    kurtosis: float
    observations: int
    deflated_sharpe: float
    annualized_sharpe: float
    def __init__(self, sharpe: _Optional[float] = ..., trials: _Optional[int] = ..., trials_variance: _Optional[float] = ..., expected_max_sharpe: _Optional[float] = ..., skewness: _Optional[float] = ..., kurtosis: _Optional[float] = ..., observations: _Optional[int] = ..., deflated_sharpe: _Optional[float] = ..., annualized_sharpe: _Optional[float] = ...) -> None: ...

class SweepPoint(_message.Message):
    __slots__ = ("parameters", "metrics")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.ScalarMap[str, float]
    metrics: BacktestMetrics
    def __init__(self, parameters: _Optional[_Mapping[str, float]] = ..., metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ...) -> None: ...

class WalkForwardFold(_message.Message):
    __slots__ = ("index", "in_sample", "out_of_sample", "chosen_parameters", "in_sample_metrics", "out_of_sample_metrics")
    class ChosenParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IN_SAMPLE_METRICS_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SAMPLE_METRICS_FIELD_NUMBER: _ClassVar[int]
    index: int
    in_sample: _common_pb2.TimeRange
    out_of_sample: _common_pb2.TimeRange
    chosen_parameters: _containers.ScalarMap[str, float]
    in_sample_metrics: BacktestMetrics
    out_of_sample_metrics: BacktestMetrics
    def __init__(self, index: _Optional[int] = ..., in_sample: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., out_of_sample: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., chosen_parameters: _Optional[_Mapping[str, float]] = ..., in_sample_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., out_of_sample_metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ...) -> None: ...

class Sweep(_message.Message):
    __slots__ = ("name", "strategy_version", "config", "axes", "objective", "walk_forward", "state", "progress", "points", "folds", "error", "creator", "create_time", "end_time", "owner", "cross_validation", "deflated_sharpe", "out_of_sample", "cv_folds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AXES_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    WALK_FORWARD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CROSS_VALIDATION_FIELD_NUMBER: _ClassVar[int]
    DEFLATED_SHARPE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy_version: str
    config: BacktestConfig
    axes: _containers.RepeatedCompositeFieldContainer[ParameterAxis]
    objective: str
    walk_forward: WalkForwardSpec
    state: _common_pb2.JobState
    progress: _common_pb2.Progress
    points: _containers.RepeatedCompositeFieldContainer[SweepPoint]
    folds: _containers.RepeatedCompositeFieldContainer[WalkForwardFold]
    error: _status_pb2.Status
    creator: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    owner: str
    cross_validation: CrossValidationSpec
    deflated_sharpe: DeflatedSharpe
    out_of_sample: OutOfSampleSummary
    cv_folds: _containers.RepeatedCompositeFieldContainer[CrossValidationFold]
    def __init__(self, name: _Optional[str] = ..., strategy_version: _Optional[str] = ..., config: _Optional[_Union[BacktestConfig, _Mapping]] = ..., axes: _Optional[_Iterable[_Union[ParameterAxis, _Mapping]]] = ..., objective: _Optional[str] = ..., walk_forward: _Optional[_Union[WalkForwardSpec, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., points: _Optional[_Iterable[_Union[SweepPoint, _Mapping]]] = ..., folds: _Optional[_Iterable[_Union[WalkForwardFold, _Mapping]]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., cross_validation: _Optional[_Union[CrossValidationSpec, _Mapping]] = ..., deflated_sharpe: _Optional[_Union[DeflatedSharpe, _Mapping]] = ..., out_of_sample: _Optional[_Union[OutOfSampleSummary, _Mapping]] = ..., cv_folds: _Optional[_Iterable[_Union[CrossValidationFold, _Mapping]]] = ...) -> None: ...

class SweepEvent(_message.Message):
    __slots__ = ("sweep", "sequence", "state", "progress", "outcome", "queue")
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    sequence: int
    state: _common_pb2.JobState
    progress: _common_pb2.Progress
    outcome: _common_pb2.Outcome
    queue: QueuePosition
    def __init__(self, sweep: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ..., queue: _Optional[_Union[QueuePosition, _Mapping]] = ...) -> None: ...

class CreateSweepRequest(_message.Message):
    __slots__ = ("sweep", "request_id")
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    request_id: str
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetSweepRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSweepsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListSweepsResponse(_message.Message):
    __slots__ = ("sweeps", "next_page_token")
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[Sweep]
    next_page_token: str
    def __init__(self, sweeps: _Optional[_Iterable[_Union[Sweep, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelSweepRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchSweepRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class PaperRun(_message.Message):
    __slots__ = ("name", "strategy_version", "config", "state", "bars", "last_bar_time", "equity", "balances", "metrics", "fills", "late_bars", "create_time", "update_time", "outcome", "sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    LAST_BAR_TIME_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    LATE_BARS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy_version: str
    config: BacktestConfig
    state: PaperRunState
    bars: int
    last_bar_time: _timestamp_pb2.Timestamp
    equity: float
    balances: _containers.RepeatedCompositeFieldContainer[PaperBalance]
    metrics: BacktestMetrics
    fills: int
    late_bars: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    outcome: _common_pb2.Outcome
    sequence: int
    def __init__(self, name: _Optional[str] = ..., strategy_version: _Optional[str] = ..., config: _Optional[_Union[BacktestConfig, _Mapping]] = ..., state: _Optional[_Union[PaperRunState, str]] = ..., bars: _Optional[int] = ..., last_bar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., equity: _Optional[float] = ..., balances: _Optional[_Iterable[_Union[PaperBalance, _Mapping]]] = ..., metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ..., fills: _Optional[int] = ..., late_bars: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class PaperBalance(_message.Message):
    __slots__ = ("venue", "asset", "amount")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    venue: str
    asset: str
    amount: float
    def __init__(self, venue: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[float] = ...) -> None: ...

class StartPaperRunRequest(_message.Message):
    __slots__ = ("name", "config", "stale_after_bars", "max_divergence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STALE_AFTER_BARS_FIELD_NUMBER: _ClassVar[int]
    MAX_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: BacktestConfig
    stale_after_bars: int
    max_divergence: float
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[BacktestConfig, _Mapping]] = ..., stale_after_bars: _Optional[int] = ..., max_divergence: _Optional[float] = ...) -> None: ...

class GetPaperRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPaperFillsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPaperFillsResponse(_message.Message):
    __slots__ = ("fills", "next_page_token")
    FILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fills: _containers.RepeatedCompositeFieldContainer[Trade]
    next_page_token: str
    def __init__(self, fills: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PaperEquityPoint(_message.Message):
    __slots__ = ("time", "equity", "drawdown", "exposure", "missing")
    TIME_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    equity: float
    drawdown: float
    exposure: float
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., equity: _Optional[float] = ..., drawdown: _Optional[float] = ..., exposure: _Optional[float] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPaperEquityRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPaperEquityResponse(_message.Message):
    __slots__ = ("points", "next_page_token")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[PaperEquityPoint]
    next_page_token: str
    def __init__(self, points: _Optional[_Iterable[_Union[PaperEquityPoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchPaperRunRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class GetPaperDivergenceRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FillDifference(_message.Message):
    __slots__ = ("kind", "reason", "paper", "backtest", "cause_time", "cause_markets")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAPER_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_FIELD_NUMBER: _ClassVar[int]
    CAUSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CAUSE_MARKETS_FIELD_NUMBER: _ClassVar[int]
    kind: FillDifferenceKind
    reason: DivergenceReason
    paper: Trade
    backtest: Trade
    cause_time: _timestamp_pb2.Timestamp
    cause_markets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[FillDifferenceKind, str]] = ..., reason: _Optional[_Union[DivergenceReason, str]] = ..., paper: _Optional[_Union[Trade, _Mapping]] = ..., backtest: _Optional[_Union[Trade, _Mapping]] = ..., cause_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cause_markets: _Optional[_Iterable[str]] = ...) -> None: ...

class PaperDivergence(_message.Message):
    __slots__ = ("name", "strategy_version", "bars", "start_time", "end_time", "quote_asset", "paper_equity", "backtest_equity", "paper_pnl", "backtest_pnl", "pnl_difference", "paper_fills", "backtest_fills", "differing_fills", "late_bars", "gap_bars", "differences", "next_page_token", "time_ms", "paper_equity_curve", "backtest_equity_curve", "max_divergence", "diverged")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    PAPER_EQUITY_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_EQUITY_FIELD_NUMBER: _ClassVar[int]
    PAPER_PNL_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_PNL_FIELD_NUMBER: _ClassVar[int]
    PNL_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    PAPER_FILLS_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_FILLS_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FILLS_FIELD_NUMBER: _ClassVar[int]
    LATE_BARS_FIELD_NUMBER: _ClassVar[int]
    GAP_BARS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PAPER_EQUITY_CURVE_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_EQUITY_CURVE_FIELD_NUMBER: _ClassVar[int]
    MAX_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy_version: str
    bars: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    quote_asset: str
    paper_equity: float
    backtest_equity: float
    paper_pnl: float
    backtest_pnl: float
    pnl_difference: float
    paper_fills: int
    backtest_fills: int
    differing_fills: int
    late_bars: int
    gap_bars: int
    differences: _containers.RepeatedCompositeFieldContainer[FillDifference]
    next_page_token: str
    time_ms: _containers.RepeatedScalarFieldContainer[int]
    paper_equity_curve: _containers.RepeatedScalarFieldContainer[float]
    backtest_equity_curve: _containers.RepeatedScalarFieldContainer[float]
    max_divergence: float
    diverged: bool
    def __init__(self, name: _Optional[str] = ..., strategy_version: _Optional[str] = ..., bars: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quote_asset: _Optional[str] = ..., paper_equity: _Optional[float] = ..., backtest_equity: _Optional[float] = ..., paper_pnl: _Optional[float] = ..., backtest_pnl: _Optional[float] = ..., pnl_difference: _Optional[float] = ..., paper_fills: _Optional[int] = ..., backtest_fills: _Optional[int] = ..., differing_fills: _Optional[int] = ..., late_bars: _Optional[int] = ..., gap_bars: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[FillDifference, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., time_ms: _Optional[_Iterable[int]] = ..., paper_equity_curve: _Optional[_Iterable[float]] = ..., backtest_equity_curve: _Optional[_Iterable[float]] = ..., max_divergence: _Optional[float] = ..., diverged: _Optional[bool] = ...) -> None: ...
