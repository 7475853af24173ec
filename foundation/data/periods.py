"""Out-of-time splits of a dataset: named half-open periods [start, end) in naive UTC, checked for order
(no label used for fitting lands in a later period)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from foundation.data.config_values import (
    SchemaError,
    check_keys,
    choice,
    mapping,
    parse_datetime,
    parse_duration,
)

SPLIT_NAMES = ("pretrain", "train", "validation", "test")


@dataclass(frozen=True)
class Period:
    """A half-open time period [start, end) in naive UTC."""

    start: datetime
    end: datetime

    @property
    def start_ms(self) -> int:
        return _epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _epoch_ms(self.end)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


@dataclass(frozen=True)
class Splits:
    """Out-of-time splits. Each period optional; those given must be ordered pretrain <= validation and
    train + label_delay <= validation + label_delay <= test, so no label used for fitting lands in a later period."""

    pretrain: Period | None = None
    train: Period | None = None
    validation: Period | None = None
    test: Period | None = None
    label_delay: str = "0d"
    label_delay_ms: int = 0

    def period(self, name: str) -> Period:
        """The named period; SchemaError when the config does not define it."""
        found = getattr(self, choice(name, SPLIT_NAMES, "splits (period name)"))
        if found is None:
            raise SchemaError(f"splits.{name}: not defined in the dataset config")
        return found

    @classmethod
    def from_node(cls, node: Any) -> Splits:
        node = mapping(node, "splits")
        check_keys(node, (*SPLIT_NAMES, "label_delay"), "splits")
        delay = node.get("label_delay", "0d")
        delay_ms = parse_duration(delay, "splits.label_delay")
        periods: dict[str, Period] = {}
        for name in SPLIT_NAMES:
            if node.get(name) is None:
                continue
            sub = mapping(node[name], f"splits.{name}")
            check_keys(sub, ("start", "end"), f"splits.{name}")
            for bound in ("start", "end"):
                if sub.get(bound) is None:
                    raise SchemaError(f"splits.{name}.{bound}: required (ISO date)")
            period = Period(parse_datetime(sub["start"], f"splits.{name}.start"),
                            parse_datetime(sub["end"], f"splits.{name}.end"))
            if period.start >= period.end:
                raise SchemaError(f"splits.{name}: start {period.start} must be before end {period.end}")
            periods[name] = period
        _check_split_order(periods, delay_ms, str(delay))
        return cls(**periods, label_delay=str(delay), label_delay_ms=delay_ms)


def _check_split_order(periods: dict[str, Period], delay_ms: int, delay: str) -> None:
    chain = [name for name in ("train", "validation", "test") if name in periods]
    for before, after in zip(chain, chain[1:]):
        need = periods[before].end_ms + delay_ms
        if periods[after].start_ms < need:
            raise SchemaError(
                f"splits.{after}.start: {periods[after].start} must not be before splits.{before}.end "
                f"({periods[before].end}) + label_delay ({delay}): {after} must start after {before} ends and its "
                f"labels have arrived")
    later = [name for name in ("validation", "test") if name in periods]
    if "pretrain" in periods and later and periods["pretrain"].end > periods[later[0]].start:
        raise SchemaError(f"splits.pretrain.end: {periods['pretrain'].end} is after splits.{later[0]}.start "
                          f"({periods[later[0]].start}); pretraining must not see the {later[0]} period")


