"""Reading one value of the data config: durations, dates, choices, numbers, column names and key sets,
each with an error that starts with the config key (`SchemaError`). Problems in the data itself raise
`DataValidationError` (found by `foundation.data.validate`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
_DURATION_UNITS_MS = {
    "ms": 1, "milli": 1, "millis": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1_000, "sec": 1_000, "second": 1_000, "seconds": 1_000,
    "t": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}


class SchemaError(ValueError):
    """The dataset config itself is wrong; the message starts with the offending config key."""


class DataValidationError(ValueError):
    """The data does not match the schema (missing columns, bad values); see `foundation.data.validate`.

    Attributes:
        problems: one entry per problem found (`foundation.data.validate.Problem`); empty for missing columns.
    """

    def __init__(self, message: str, problems: Sequence[Any] = ()):
        super().__init__(message)
        self.problems = list(problems)


def parse_duration(value: Any, key: str) -> int:
    """Parse a pandas-like duration ("1h", "15min", "1d", "500ms", "2w") to milliseconds.

    Args:
        value: the duration string; 0 is accepted for "no duration".
        key: config key, named in the error.
    Returns:
        the duration in milliseconds (>= 0).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0
    match = _DURATION_RE.match(str(value)) if isinstance(value, str) else None
    unit = match.group(2) if match else ""
    if unit in ("m", "M"):
        raise SchemaError(f"{key}: duration {value!r} is ambiguous; write minutes as 'min' (months have no fixed length)")
    if not match or unit.lower() not in _DURATION_UNITS_MS:
        raise SchemaError(f"{key}: cannot parse duration {value!r}; expected a number and a unit, "
                          f"e.g. '500ms', '30s', '15min', '1h', '7d', '2w'")
    return int(round(float(match.group(1)) * _DURATION_UNITS_MS[unit.lower()]))


def parse_datetime(value: Any, key: str) -> datetime:
    """ISO date/datetime (or a YAML date) -> naive UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            # Python 3.10's fromisoformat rejects a trailing Z.
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise SchemaError(f"{key}: cannot parse {value!r} as an ISO date, e.g. '2024-01-31' or "
                              f"'2024-01-31T12:00:00'") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def check_keys(node: Mapping, known: Sequence[str], key: str) -> None:
    """Every key of `node` must be one of `known`: an unknown one (a typo, or an option that does not
    exist, such as `nullable`) is never kept silently. The error names it, a near miss, and the valid keys."""
    for name in node:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SchemaError(f"{key}.{name}: unknown key{hint} (valid keys: {', '.join(known)})")


def mapping(node: Any, key: str) -> dict:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise SchemaError(f"{key}: expected a mapping, got {type(node).__name__} {node!r}")
    return dict(node)


def choice(value: Any, choices: Sequence[str], key: str) -> str:
    if value not in choices:
        raise SchemaError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{key}: expected true or false, got {value!r}")
    return value


def number(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{key}: expected a number, got {value!r}")
    return float(value)


def column_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{key}: expected a column name (non-empty string), got {value!r}")
    return value


