"""How the command line shows data: tables with times in the business time zone, named
(2030-01-07 14:00 WIB), or JSON with camelCase keys (as the functions' HTTP answers and the
link events use) and ISO 8601 times with their offset."""
from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _camel_keys(value):
    if isinstance(value, dict):
        return {camel(str(k)): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_camel_keys(v) for v in value]
    return value


def _plain(value):
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def as_json(data) -> str:
    return json.dumps(_camel_keys(data), indent=2, default=_plain)


class Table:
    """Rows as a text table; times shown in `zone`."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone

    def when(self, value) -> str:
        if not isinstance(value, datetime):
            return _plain(value)
        local = value.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or self.zone.key)

    def cell(self, value) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, datetime):
            return self.when(value)
        if isinstance(value, (list, dict)):
            return f"{len(value)}" if value else "-"
        return _plain(value)

    def render(self, rows: list[dict]) -> str:
        if not rows:
            return "(none)"
        heads = list(rows[0])
        cells = [[self.cell(r.get(h)) for h in heads] for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]

        def line(values):
            return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
        return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, cells)])

    def record(self, row: dict) -> str:
        """One record, a field per line (for `show` commands); lists below it as tables."""
        scalars = {k: v for k, v in row.items() if not isinstance(v, (list, dict))}
        width = max((len(k) for k in scalars), default=0)
        lines = [f"{k.ljust(width)}  {self.cell(v)}" for k, v in scalars.items()]
        for k, v in row.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                lines += ["", f"{k}:", self.render(v)]
            elif isinstance(v, dict):
                lines += ["", f"{k}:", json.dumps(v, indent=2, default=_plain)]
        return "\n".join(lines)
