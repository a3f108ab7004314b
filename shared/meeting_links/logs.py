"""Structured logs through the standard library: one JSON object per line on stderr, in the
shape Cloud Logging reads (severity, message, trace), for our lines and for every library
that logs with `logging` (pg8000, google-auth, the Cloud SQL connector) alike. An error with
an exception carries `stack_trace`, which Error Reporting groups by. LOG_FORMAT=text (the
local stack's default) writes the same records as readable lines instead.

A line someone must be told about carries an `alert` field naming it (ALERTS below):
deploy.sh's log-based metrics match that field, never the wording of the message.

stderr, so that a command's own output on stdout stays clean; Cloud Logging parses JSON lines
on either stream. Callers pass ids as fields; never secrets or signatures."""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
from datetime import UTC, datetime

# The alert each deploy.sh metric counts; the value is what the person alerted should know.
ALERTS = {
    "pool_exhausted": "a paid booking has no link and waits for a person",
    "sweep_incomplete": "a sweep ran out of time before finishing a stage",
    "link_events_gone": "the app's receiver answered 410 Gone: no link events are sent to it",
    "meet_credentials_refused": "Google refused MEET_CREDENTIALS: private spaces cannot be created",
    "sweep_ran": "a sweep finished (an INFO heartbeat: its absence is the alert)",
}

_trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")
_logger = logging.getLogger("meeting_links")
_SEVERITY = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
             logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}
# Attributes every LogRecord has; anything else on a record is a field someone passed.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class CloudLoggingFormatter(logging.Formatter):
    """A LogRecord as one Cloud Logging JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": _SEVERITY.get(record.levelno, "DEFAULT"), "message": record.getMessage(),
                 "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")}
        if record.name != _logger.name:
            entry["logger"] = record.name
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        entry.update(_fields(record))
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ReadableFormatter(logging.Formatter):
    """A LogRecord as one line a person reads in a terminal: time, severity, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{when} {_SEVERITY.get(record.levelno, 'LOG'):<7} {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is now (a test's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_setup_lock = threading.Lock()
_handler: _StderrHandler | None = None


def setup(level: int = logging.INFO, log_format: str = "json") -> None:
    """Sends every logger's records through one formatter (once per process; the format may
    change later): ours at `level`, other libraries' at WARNING and above."""
    global _handler
    with _setup_lock:
        if _handler is None:
            _handler = _StderrHandler()
            root = logging.getLogger()
            root.addHandler(_handler)
            if root.level == logging.NOTSET or root.level > logging.WARNING:
                root.setLevel(logging.WARNING)
        _handler.setFormatter(ReadableFormatter() if log_format == "text" else CloudLoggingFormatter())
        _logger.setLevel(level)


def bind_trace(header: str | None, project: str) -> None:
    """Attach the request's X-Cloud-Trace-Context to every line this request logs."""
    trace_id = (header or "").split("/", 1)[0].strip()
    _trace.set(f"projects/{project}/traces/{trace_id}" if trace_id and project else "")


def log(level: int, message: str, exc_info=None, **fields) -> None:
    if _handler is None:
        setup()
    _logger.log(level, message, exc_info=exc_info, extra=fields)


def info(message: str, **fields) -> None:
    log(logging.INFO, message, **fields)


def warning(message: str, **fields) -> None:
    log(logging.WARNING, message, **fields)


def error(message: str, exc_info=None, **fields) -> None:
    log(logging.ERROR, message, exc_info=exc_info, **fields)


def alert(name: str, message: str, level: int = logging.ERROR, **fields) -> None:
    """A line an alert fires on (deploy.sh counts `alert` = name)."""
    assert name in ALERTS, name
    log(level, message, alert=name, **fields)
