"""What counts as an id: one rule for the functions' JSON, the command line and the SQL calls."""
from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def as_uuid(value) -> str | None:
    """The canonical (lower-case, dashed) form of a UUID string, or None for anything else."""
    return value.lower() if isinstance(value, str) and _UUID.fullmatch(value) else None
