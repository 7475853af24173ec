"""Shared fixtures: one tiny world and untrained tiny checkpoint per session (tests/embeddings/world.py), and
real `DataSchema`s for the tests of the stages that read a schema (`make_schema`, `schema`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from foundation.data.schema import DataSchema, Period, Splits, parse_duration
from tests.embeddings.world import World, session_world

# The canonical test event table's fields (tests/evaluation/conftest.py `make_events`).
FIELDS: dict[str, dict[str, Any]] = {
    "event_type": {"type": "categorical", "outcome": True},
    "amount": {"type": "numeric"},
    "channel": {"type": "categorical"},
    "mcc": {"type": "categorical"},
    "merchant_country": {"type": "categorical"},
    "card_country": {"type": "categorical"},
    "decline_code": {"type": "categorical", "outcome": True},
    "disputed_event_id": {"type": "categorical"},
    "descriptor": {"type": "text"},
}
LABELS = ("is_fraud", "approved")
ENTITIES = ("customer", "merchant", "issuer")
# The synthetic dataset's out-of-time periods (conf/data/synthetic.yaml), half-open [start, end).
PERIODS = {
    "pretrain": ("2024-01-01", "2024-04-01"),
    "train": ("2024-02-01", "2024-04-08"),
    "validation": ("2024-04-15", "2024-05-13"),
    "test": ("2024-05-20", "2024-07-01"),
}


def make_schema(label_delay: str = "7d", *, fields: Mapping[str, Mapping[str, Any]] | None = None,
                labels: Sequence[str] = LABELS, entities: Sequence[str] = ENTITIES,
                **periods: tuple[str, str]) -> DataSchema:
    """A real, checked DataSchema of the canonical test events.

    Args:
        label_delay: `splits.label_delay`.
        fields: the `fields` block (default FIELDS), name -> field config as conf/data/*.yaml writes it.
        labels: label names (each its own column).
        entities: entity types, keyed by `<type>_id` raw columns.
        periods: period overrides, name=(start, end) ISO dates.
    Returns:
        `DataSchema.from_config` of that config (raises SchemaError for a config it refuses).
    """
    splits: dict[str, Any] = {name: {"start": a, "end": b} for name, (a, b) in {**PERIODS, **periods}.items()}
    return DataSchema.from_config({
        "name": "tests",
        "source": {"path": "events.parquet"},
        "timestamp": "ts",
        "entities": {e: {"column": f"{e}_id"} for e in entities},
        "fields": {name: dict(spec) for name, spec in (FIELDS if fields is None else fields).items()},
        "labels": {name: {"column": name} for name in labels},
        "splits": {**splits, "label_delay": label_delay},
    })


def unchecked_schema(label_delay: str = "7d", **periods: tuple[str, str]) -> DataSchema:
    """`make_schema()` with its splits built in code, past the config's order check (DataSchema.from_config
    refuses leaking splits): for the checks that guard schemas built that way (`check_no_leakage`)."""
    bounds = {name: Period(*(dt.datetime.fromisoformat(x) for x in pair))
              for name, pair in {**PERIODS, **periods}.items()}
    splits = Splits(**bounds, label_delay=label_delay,
                    label_delay_ms=parse_duration(label_delay, "splits.label_delay"))
    return dataclasses.replace(make_schema(), splits=splits)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return session_world(tmp_path_factory)


@pytest.fixture
def schema() -> DataSchema:
    """The canonical test events' schema (a fresh one per test: tests may edit its field dict)."""
    return make_schema()
