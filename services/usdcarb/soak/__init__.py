"""The soak (issue 19): mixed load through the gateway while faults are injected, then an
accounting pass over every store against what the clients were told.

``python -m usdcarb.soak --seconds 180 --seed 1`` (``make soak``). soak-core: the driver,
the load, the accounting and the report (``driver``, ``load``, ``workers``,
``accounting``, ``report``); soak-faults: the fault schedule and its injectors
(``schedule``, ``faults``, ``faultproxy``).
"""
