"""Paper trading of deployed strategy versions (issue 18).

A paper run feeds each newly stored closed bar of a deployment's markets to the backtest
engine's kernel, bar by bar, with the engine state checkpointed in PostgreSQL in the same
transaction as the bar's fills (``book`` steps the engine, ``store`` keeps the run,
``runner`` follows the bars under a lease so any backtest replica can take a run over).
"""
