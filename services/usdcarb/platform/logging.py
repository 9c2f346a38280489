"""Configure process logging: one JSON line per record, tagged with the request id.

The request id lives in a ContextVar set by the request-id interceptor; grpc.aio runs
each RPC (interceptors and handler) in its own context, so ids never leak between
concurrent calls.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json as jsonlib
import logging
import sys
from typing import Any, TextIO

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else came from ``extra=`` and is emitted.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class RequestIdFilter(logging.Filter):
    """Copy the current request id onto each record so any formatter can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: timestamp, level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(payload, default=str, ensure_ascii=False)


class _PlatformHandler(logging.StreamHandler[TextIO]):
    """Mark the handler configure_logging installed, so it can be replaced."""


_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str | int = "INFO", json: bool = True) -> None:
    """Send every log record to stderr, as JSON lines or readable text.

    Call once from a service's entrypoint; calling again replaces the handler it
    installed instead of adding a second one (handlers others installed, such as
    pytest's capture, stay).
    """
    handler = _PlatformHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _PlatformHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
