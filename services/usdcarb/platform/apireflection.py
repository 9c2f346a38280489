"""Name every service of the API for server reflection.

The gateway routes reflection to one backend, so that backend must describe the whole
``usdcarb.v1`` API, not only the services it serves itself: every service registers all
of them (one code base, one API), and ``grpcurl <gateway> list|describe`` sees all six.
Importing the generated modules puts their file descriptors in the default pool, which
is where the reflection servicer looks symbols up.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

API_PACKAGE = "usdcarb.v1"

__all__ = ["API_PACKAGE", "api_service_names"]


@cache
def api_service_names(package: str = API_PACKAGE) -> tuple[str, ...]:
    """Return the full names of every service in the generated ``package``, sorted."""
    root = importlib.import_module(package)
    names: set[str] = set()
    for module in pkgutil.iter_modules(root.__path__):
        if not module.name.endswith("_pb2"):
            continue
        generated = importlib.import_module(f"{package}.{module.name}")
        names.update(svc.full_name for svc in generated.DESCRIPTOR.services_by_name.values())
    return tuple(sorted(names))
