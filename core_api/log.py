"""Structured JSON logs on stderr, one object per line, each carrying the request id of its request."""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import msgspec

from core_api.web.context import request_id_var

__all__ = ["JsonFormatter", "configure_logging", "dict_config"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted as a field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return _encoder.encode(entry).decode("utf-8", errors="replace")

    def formatException(self, ei: Any) -> str:
        return "".join(traceback.format_exception(*ei))


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (ours, granian's, arq's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "psycopg.pool", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def dict_config(level: str = "INFO") -> dict[str, Any]:
    """The same JSON logging as a ``logging.config`` dict, for servers that configure logging themselves (granian)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        # granian's own loggers refer to handlers named "console" and "access": both become JSON on stderr.
        "handlers": {
            name: {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
            for name in ("console", "access")
        },
        "root": {"handlers": ["console"], "level": level},
    }
