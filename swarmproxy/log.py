"""Structured logging: one line per event, `key=value` text or JSON.

Callers pass the fields in `extra={"fields": {...}}`; `log_event` does that for them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
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


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float, msecs: float) -> str:
    # Lines come by the thousand per second under load: the date part is worked out once.
    global _second
    second = int(created)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{int(msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created, record.msecs),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    fields.update(getattr(record, _RESERVED, {}))
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


_NEEDS_QUOTES = re.compile(r'[ "=\n]')


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


class _Batched(logging.Handler):
    """Formats a record where it is logged and leaves its line in a batch, which a thread of
    its own writes every FLUSH_SECONDS (sooner when BATCH_LINES are waiting).

    A request's line then costs the event loop its formatting and an append: no write to
    stderr, and no thread woken per line (profiled: a queue put per line woke the writer
    thousands of times a second, and its wake-ups and GIL hand-overs cost an inspect as much
    as the line's own work). A line is written at most FLUSH_SECONDS after it is logged; a
    process killed outright loses that much."""

    FLUSH_SECONDS = 0.05
    BATCH_LINES = 512

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._lines: list[str] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if len(self._lines) >= self.BATCH_LINES:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.FLUSH_SECONDS)
            self._wake.clear()
            self._write()
        self._write()

    def _write(self) -> None:
        # handle() holds this lock around emit(): no line lands in a batch being written.
        assert self.lock is not None
        with self.lock:
            lines, self._lines = self._lines, []
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                # stderr closed or gone: nothing to tell it with.
                pass

    def restart_in_child(self) -> None:
        # A forked worker has the batch but not the thread; the parent writes that batch.
        self._lines = []
        self.start()

    def stop(self) -> None:
        """Writes what is waiting, then ends the thread."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._stopping = True
        self._wake.set()
        thread.join()


_writer: _Batched | None = None


def setup(level: str = "info", fmt: str = "text") -> None:
    global _writer
    if _writer is not None:
        _writer.stop()
    _writer = _Batched(sys.stderr)
    _writer.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [_writer]
    root.setLevel(level.upper())
    # No line shows the caller's frame, thread or process, and each costs every record a
    # lookup (the logging HOWTO's "Optimization"): a request's line is on the hot path.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
