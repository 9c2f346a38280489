"""Backtest service."""
