"""The backtest engine: a per-bar numba kernel over aligned columnar series.

Pure (numpy, numba, the standard library and the strategy kinds' schemas); no I/O.
See ``loop`` for the strategy rules, ``kernel`` for fills, inventory and transfers,
``metrics`` for the figures and ``sweep`` for grids and walk-forward.
"""

from . import _cache  # noqa: F401  (first: numba's cache directory, before numba loads)
from .model import (
    ENGINE_VERSION,
    BacktestOutput,
    Cancelled,
    EngineConfig,
    Execution,
    Fold,
    MarketFrame,
    Progress,
    Robustness,
    Series,
    SweepPoint,
    TradeLog,
    Transfer,
    VenueCosts,
)
from .params import ParameterError, pricing_symbols, required_series, validate_params
from .run import run_backtest
from .sweep import run_sweep, run_walk_forward

__all__ = [
    "ENGINE_VERSION",
    "BacktestOutput",
    "Cancelled",
    "EngineConfig",
    "Execution",
    "Fold",
    "MarketFrame",
    "ParameterError",
    "Progress",
    "Robustness",
    "Series",
    "SweepPoint",
    "TradeLog",
    "Transfer",
    "VenueCosts",
    "pricing_symbols",
    "required_series",
    "run_backtest",
    "run_sweep",
    "run_walk_forward",
    "validate_params",
]
