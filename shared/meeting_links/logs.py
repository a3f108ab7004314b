"""Structured logs: one JSON object per line on stderr, in the shape Cloud Logging reads
(severity, message, trace). stderr, so that a command's own output on stdout stays clean;
Cloud Logging parses JSON lines on either stream. Callers pass ids as fields; never secrets
or signatures."""
from __future__ import annotations

import contextvars
import json
import sys
from datetime import datetime, timezone

_trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")


def bind_trace(header: str | None, project: str) -> None:
    """Attach the request's X-Cloud-Trace-Context to every line this request logs."""
    trace_id = (header or "").split("/", 1)[0].strip()
    _trace.set(f"projects/{project}/traces/{trace_id}" if trace_id and project else "")


def log(severity: str, message: str, **fields) -> None:
    entry = {"severity": severity, "message": message,
             "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
    trace = _trace.get()
    if trace:
        entry["logging.googleapis.com/trace"] = trace
    entry.update({k: v for k, v in fields.items() if v is not None})
    sys.stderr.write(json.dumps(entry, default=str) + "\n")
    sys.stderr.flush()


def info(message: str, **fields) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields) -> None:
    log("ERROR", message, **fields)
