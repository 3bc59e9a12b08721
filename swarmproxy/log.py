"""Structured logging: one line per event, `key=value` text or JSON.

Callers pass the fields in `extra={"fields": {...}}`; `log_event` does that for them.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from contextvars import ContextVar
from typing import Any

_RESERVED = "fields"

# The request a line is logged for: every line logged while serving it carries its ID.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        request_id = REQUEST_ID.get()
        if request_id:
            fields.setdefault("request_id", request_id)
        logger.log(level, event, extra={_RESERVED: fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    fields.update(getattr(record, _RESERVED, {}))
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


class _Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting them is its work."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _Writer:
    """Formats and writes log lines on a thread of its own, so that a request's line costs
    the event loop a queue put rather than formatting and a write to stderr."""

    def __init__(self, handler: logging.Handler) -> None:
        self._handler = handler
        self._listener: logging.handlers.QueueListener | None = None
        self.queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.start()

    def start(self) -> None:
        self._listener = logging.handlers.QueueListener(self.queue, self._handler)
        self._listener.start()

    def restart_in_child(self) -> None:
        # A forked worker has the queue but not the thread: lines would wait there forever.
        self.queue = queue.SimpleQueue()
        for handler in logging.getLogger().handlers:
            if isinstance(handler, _Handoff):
                handler.queue = self.queue
        self.start()

    def stop(self) -> None:
        if self._listener is not None:
            # Writes what is queued, then ends the thread.
            self._listener.stop()
            self._listener = None


_writer: _Writer | None = None


def setup(level: str = "info", fmt: str = "text") -> None:
    global _writer
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    if _writer is not None:
        _writer.stop()
    _writer = _Writer(handler)
    root = logging.getLogger()
    root.handlers[:] = [_Handoff(_writer.queue)]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate our request lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def close() -> None:
    """Write the lines still queued; what a process does last, also a worker's."""
    if _writer is not None:
        _writer.stop()


def _after_fork() -> None:
    if _writer is not None:
        _writer.restart_in_child()


atexit.register(close)
os.register_at_fork(after_in_child=_after_fork)
