"""Request validation: raw JSON events -> canonical `EventRecord`s, with 4xx errors naming field and reason.

A request event uses the **raw** column names of the data schema (`conf/data/<name>.yaml`), exactly like
a row of the raw files: e.g. `{"event_id": 1, "ts": "2024-05-01T12:00:00", "card_id": 7, "amount": 12.5, ...}`.
Conversion and value checks are the batch path's own (`foundation.data.events.convert_events` via
`foundation.data.validate.validate`), so an event the service accepts is exactly an event the training
pipeline accepts, converted to the same canonical values.

Checks in order, each reported with the event's index in the batch, the raw column, the config key and
the reason:
1. shape: a JSON object (one event) or array of objects; at most `max_batch_events` events (413);
2. `missing`: a schema column absent from the event (labels are optional; when scoring without commit,
   so are the outcome fields and the event id);
3. `wrong_type`: a value that is not a JSON string/number/null (booleans, objects, arrays), or NaN /
   Infinity in a column that is not numeric;
   `invalid_unicode`: a string holding a lone surrogate (JSON allows the escape "\\ud800"; UTF-8 does not);
   blank (whitespace-only) event ids and entity keys are `null_event_id` / `null_entity_key.<type>`;
4. the validator's row checks: unconvertible values (`wrong_type.<field>`, `unparsable_timestamp`),
   null keys, NaN (`nan_value.<field>`), nulls where `allow_null: false`, values outside [min, max];
5. event time bounds (the service's, not the batch path's: they depend on the clock):
   `implausible_event_time` before `min_event_ms`, `future_event_time` more than `max_future_skew_ms` ahead
   of the service clock. One event dated 2099 would otherwise hold every later event of its entities
   "in the past" for good.
Repeated event ids inside one batch are not an error: later copies are duplicates (acknowledged, not
applied), exactly as if they had been sent again later.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, create_model

from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.validate import validate
from foundation.serving.state import EventRecord

MAX_PROBLEMS = 50  # problems listed in one error response
ATTEMPT_ID = "__attempt__"  # event id of a scored attempt sent without one; never stored
EPOCH = datetime(1970, 1, 1)


def now_ms() -> int:
    """The service clock: epoch milliseconds, UTC."""
    return time.time_ns() // 1_000_000


class RequestError(Exception):
    """An HTTP error with a JSON body: status, message and a list of problems
    (`{"index", "field", "key", "reason", "problem"}`)."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems or [])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.problems:
            out["problems"] = self.problems[:MAX_PROBLEMS]
            if len(self.problems) > MAX_PROBLEMS:
                out["problems_omitted"] = len(self.problems) - MAX_PROBLEMS
        return out


@dataclass(frozen=True)
class Attempt:
    """A charge attempt to score.

    Args:
        record: the canonical event (event_id is ATTEMPT_ID when the request had none).
        has_event_id: whether the request named its event id (it then breaks ties at equal event_time).
    """

    record: EventRecord
    has_event_id: bool = True


def _problem(index: int | None, column: str | None, key: str | None, reason: str, problem: str) -> dict[str, Any]:
    return {"index": index, "field": column, "key": key, "reason": reason, "problem": problem}


def _json_type(value: Any) -> str:
    return {bool: "boolean", dict: "object", list: "array"}.get(type(value), type(value).__name__)


@dataclass
class EventParser:
    """Validates raw JSON events against a `DataSchema`.

    Args:
        schema: the dataset schema training used (raw column names, field types, value rules).
        min_event_ms: events dated before this epoch-ms instant are refused; None = no lower bound.
        max_future_skew_ms: events dated more than this ahead of `clock()` are refused; None = no bound.
        clock: the service clock in epoch ms (tests pass a fixed one).
    """

    schema: DataSchema
    min_event_ms: int | None = None
    max_future_skew_ms: int | None = None
    clock: Callable[[], int] = field(default=now_ms, repr=False)
    _kinds: dict[str, str] = field(init=False, repr=False)
    _entity_of: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.schema
        # Raw column -> the kind of value it holds: decides which JSON values are acceptable.
        kinds = {self.event_id_column: "id", s.timestamp.column: "timestamp"}
        kinds.update({e.column: "id" for e in s.entities.values()})
        kinds.update({f.column: f.type for f in s.fields.values()})
        kinds.update({column: "label" for column in s.label_columns})
        self._kinds = kinds
        self._entity_of = {e.column: e.type for e in s.entities.values()}

    @property
    def _optional_fields(self) -> set[str]:
        """Columns an event may omit besides labels: the landed-label field (`label_events`), set only on
        the label events a client posts when a label lands."""
        spec = self.schema.label_events
        return set() if spec is None else {self.schema.fields[spec.field].column}

    @property
    def event_id_column(self) -> str:
        """Raw column of the event id; "event_id" when the schema has none (the service needs one)."""
        return self.schema.event_id or "event_id"

    @property
    def entity_types(self) -> list[str]:
        return list(self.schema.entities)

    def check_entity_type(self, entity_type: str) -> None:
        if entity_type not in self.schema.entities:
            raise RequestError(404, f"unknown entity type {entity_type!r}; the schema declares "
                                    f"{', '.join(self.schema.entities)}",
                               [_problem(None, "entity_type", "entities", "unknown_entity_type",
                                         f"{entity_type!r} is not an entity of dataset {self.schema.name!r}")])

    # ------------------------------------------------------------------ public parsing

    def parse_batch(self, payload: Any, max_events: int) -> list[EventRecord]:
        """Validate POST /v1/events: one event (object) or a batch (array of objects).

        Returns:
            one EventRecord per input event, in input order (later copies of a repeated id included: the
            store acknowledges them as duplicates).
        Raises:
            RequestError: 413 (batch too large) or 422 naming every problem.
        """
        rows = self._rows(payload)
        if len(rows) > max_events:
            raise RequestError(413, f"batch has {len(rows)} events; the limit is {max_events} "
                                    "(server.max_batch_events); split the batch")
        return self._parse(rows)

    def parse_attempt(self, payload: Any, commit: bool) -> Attempt:
        """Validate POST /v1/score: one charge attempt. Without commit its outcome fields and event id may
        be absent (they are not known before authorisation and are never features of the attempt)."""
        if not isinstance(payload, dict):
            raise RequestError(422, f"a score request is one event (a JSON object), got {_json_type(payload)}",
                               [_problem(None, None, None, "wrong_type", "expected a JSON object")])
        if commit:
            return Attempt(self._parse([payload])[0], True)
        row, absent, has_id = self._attempt_row(payload, ATTEMPT_ID)
        return self._attempt(self._parse([row])[0], absent, has_id)

    def parse_attempts(self, items: Sequence[tuple[Any, bool]]) -> list[Attempt | RequestError]:
        """`parse_attempt` of several requests (payload, commit) with one validator pass for the plain ones
        (a micro-batch); each request gets its own Attempt or RequestError, as if parsed alone.

        A batch with any problem, or with a repeated event id, is parsed again one request at a time, so a
        bad request gets exactly its own error and never fails its neighbours.
        """
        plain = [k for k, (payload, commit) in enumerate(items) if not commit and isinstance(payload, dict)]
        out: list[Attempt | RequestError | None] = [None] * len(items)
        if len(plain) > 1:
            prepared = [self._attempt_row(items[k][0], f"{ATTEMPT_ID}{k}") for k in plain]  # ids unique in the batch
            ids = [row[self.event_id_column] for row, _, _ in prepared]
            if len(set(map(str, ids))) == len(ids):
                try:
                    records = self._parse([row for row, _, _ in prepared])
                except RequestError:
                    records = None
                if records is not None:
                    for k, record, (_, absent, has_id) in zip(plain, records, prepared):
                        if not has_id:
                            record.payload["event_id"] = ATTEMPT_ID
                            record = replace(record, event_id=ATTEMPT_ID)
                        out[k] = self._attempt(record, absent, has_id)
        for k, (payload, commit) in enumerate(items):
            if out[k] is None:
                try:
                    out[k] = self.parse_attempt(payload, commit)
                except RequestError as err:
                    out[k] = err
        return out  # type: ignore[return-value]

    def _attempt_row(self, payload: dict[str, Any], missing_id: str) -> tuple[dict[str, Any], list[Any], bool]:
        """The row validated for a plain attempt: (row, its absent outcome fields, whether it names its id)."""
        row = dict(payload)
        has_id = row.get(self.event_id_column) is not None
        if not has_id:
            row[self.event_id_column] = missing_id
        # Unknown outcome fields get a placeholder that passes the value checks, and are nulled again
        # after validation: the model sees outcome fields of the attempt as padding anyway (section 8).
        outcome = [f for f in self.schema.fields.values() if f.outcome]
        absent = [f for f in outcome if row.get(f.column) is None]
        for f in absent:
            row[f.column] = self._placeholder(f, row.get(self.schema.timestamp.column))
        return row, absent, has_id

    @staticmethod
    def _attempt(record: EventRecord, absent: list[Any], has_id: bool) -> Attempt:
        for f in absent:
            record.payload[f.name] = None
        return Attempt(record, has_id)

    @staticmethod
    def _placeholder(spec: Any, event_time: Any) -> Any:
        if spec.type == "numeric":
            return spec.min if spec.min is not None else (spec.max if spec.max is not None else 0.0)
        if spec.type == "timestamp":
            return event_time
        return ""

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _rows(payload: Any) -> list[dict[str, Any]]:
        if isinstance(payload, dict):
            return [payload]
        if not isinstance(payload, list):
            raise RequestError(422, f"expected a JSON object (one event) or array (a batch), got "
                                    f"{_json_type(payload)}",
                               [_problem(None, None, None, "wrong_type", "expected an object or array")])
        if not payload:
            raise RequestError(422, "the batch is empty", [_problem(None, None, None, "empty", "no events")])
        bad = [_problem(i, None, None, "wrong_type", f"an event must be a JSON object, got {_json_type(r)}")
               for i, r in enumerate(payload) if not isinstance(r, dict)]
        if bad:
            raise RequestError(422, f"{len(bad)} batch item(s) are not JSON objects", bad)
        return payload

    def _parse(self, rows: list[dict[str, Any]]) -> list[EventRecord]:
        keys = self.schema.column_keys
        labels = set(self.schema.label_columns) | self._optional_fields
        problems: list[dict[str, Any]] = []
        columns: dict[str, list[str | None]] = {c: [None] * len(rows) for c in self._kinds}
        for i, row in enumerate(rows):
            for column, kind in self._kinds.items():
                if column not in row:
                    if column not in labels:
                        problems.append(_problem(i, column, keys.get(column, "event_id"), "missing",
                                                 "required column is missing from the event"))
                    continue
                value = row[column]
                if value.__class__ is int or (value.__class__ is str and value.isascii()):
                    text, reason, problem = str(value), "", None  # _as_text's answer for the common cases
                else:
                    text, reason, problem = self._as_text(value, kind)
                if problem is None and kind == "id" and text and not text.strip():
                    reason, problem = self._blank_key(column)
                if problem is not None:
                    problems.append(_problem(i, column, keys.get(column, "event_id"), reason, problem))
                columns[column][i] = text
        if problems:
            raise RequestError(422, f"{len(problems)} problem(s) in {len(rows)} event(s)", problems)

        # In-batch repeats are validated once (the validator would reject them as duplicate rows).
        ids = columns[self.event_id_column]
        first: dict[str | None, int] = {}
        for i, value in enumerate(ids):
            first.setdefault(value, i)
        if ids.count(None):
            i = ids.index(None)
            raise RequestError(422, "event id is null", [_problem(i, self.event_id_column, "event_id", "null_event_id",
                                                                   "event id is null or empty")])
        unique = sorted(first.values())
        raw = pa.table({c: pa.array([v[i] for i in unique], pa.string()) for c, v in columns.items()})
        records = self._records(self._validate(raw, unique), raw)
        self._check_times(records, unique)
        if len(unique) == len(ids):
            return records
        position = {i: k for k, i in enumerate(unique)}
        return [records[position[first[v]]] for v in ids]

    @staticmethod
    def _as_text(value: Any, kind: str) -> tuple[str | None, str, str | None]:
        """A JSON value as the string the converter parses (as if read from CSV), or (reason, problem)."""
        if value is None:
            return None, "", None
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:  # arrow (and the JSON response) would fail on it later: a 500
                    return None, "invalid_unicode", "not valid Unicode text (holds a lone surrogate such as \\ud800)"
            return value, "", None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "wrong_type", f"expected a string or number, got {_json_type(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            if kind in ("numeric", "label"):
                return repr(value), "", None  # NaN/inf: the validator decides (allow_nan; labels read NaN as null)
            return None, "wrong_type", f"{value!r} is not a valid {kind} value"
        if isinstance(value, float) and value.is_integer() and kind in ("id", "categorical", "text"):
            return str(int(value)), "", None  # as convert_events writes integral float ids
        return repr(value) if isinstance(value, float) else str(value), "", None

    def _blank_key(self, column: str) -> tuple[str, str]:
        """(reason, problem) for a whitespace-only id: the validator's null-key reasons (it only sees "")."""
        etype = self._entity_of.get(column)
        if etype is None:
            return "null_event_id", "event id is blank (whitespace only)"
        return f"null_entity_key.{etype}", f"{etype} key is blank (whitespace only)"

    def _check_times(self, records: list[EventRecord], positions: list[int]) -> None:
        """Refuse event times outside [min_event_ms, clock() + max_future_skew_ms]."""
        if self.min_event_ms is None and self.max_future_skew_ms is None:
            return
        lo = self.min_event_ms
        now = self.clock() if self.max_future_skew_ms is not None else None
        hi = None if now is None else now + self.max_future_skew_ms
        column, problems = self.schema.timestamp.column, []
        for record, index in zip(records, positions):
            t = record.event_time
            if lo is not None and t < lo:
                problems.append(_problem(index, column, "timestamp.column", "implausible_event_time",
                                         f"event time {self.format_time(t)} is before {self.format_time(lo)} "
                                         "(server.min_event_time)"))
            elif hi is not None and t > hi:
                problems.append(_problem(index, column, "timestamp.column", "future_event_time",
                                         f"event time {self.format_time(t)} is more than {self.max_future_skew_ms} ms "
                                         f"ahead of the service clock {self.format_time(now)} "
                                         "(server.max_future_skew)"))
        if problems:
            raise RequestError(422, f"{len(problems)} event time(s) out of bounds", problems)

    def _validate(self, raw: pa.Table, positions: list[int]) -> pa.Table:
        """The validator's conversion and row checks; problems point at the event's index in the request."""
        try:
            return validate(raw, self.schema, on_error="raise").table
        except DataValidationError as err:
            if not err.problems:  # a whole-column failure (no row to point at)
                raise RequestError(422, str(err).splitlines()[0]) from None
            problems = [
                _problem(positions[p.example_row], p.column, p.key, p.reason,
                         p.problem if p.count == 1 else f"{p.problem} ({p.count} events, first shown)")
                for p in err.problems
            ]
            raise RequestError(422, f"{len(problems)} problem(s) in {raw.num_rows} event(s)", problems) from None

    def _records(self, table: pa.Table, raw: pa.Table) -> list[EventRecord]:
        """Canonical rows -> EventRecords; timestamps become epoch-ms ints so payloads are JSON."""
        if self.schema.event_id is None:  # the converter numbered the rows; the service needs the client's id
            table = table.set_column(0, "event_id", raw[self.event_id_column])
        for i, f in enumerate(table.schema):
            if pa.types.is_timestamp(f.type):
                table = table.set_column(i, f.name, pc.cast(table[f.name], pa.int64()))
        id_columns = [(e.type, e.id_column) for e in self.schema.entities.values()]
        return [
            EventRecord(row["event_id"], row["event_time"],
                        tuple((etype, row[col]) for etype, col in id_columns if row[col] is not None), row)
            for row in table.to_pylist()
        ]

    @staticmethod
    def format_time(ms: int) -> str:
        """Epoch ms -> ISO-8601 UTC (naive, millisecond precision), the format responses use."""
        return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def parse_as_of(value: str | None, name: str = "as_of") -> int | None:
    """`?as_of=` (ISO-8601; naive = UTC) -> epoch ms, or None; errors name `name`."""
    if value is None:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise RequestError(422, f"{name} {value!r} is not an ISO-8601 date/time",
                           [_problem(None, name, None, "unparsable_timestamp", "expected e.g. 2024-05-01T12:00:00")]
                           ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return (moment - EPOCH) // timedelta(milliseconds=1)


# JSON types a raw column accepts, per kind of column (what `EventParser._as_text` converts).
_JSON_TYPES: dict[str, Any] = {
    "id": str | int, "timestamp": str | int | float, "categorical": str | int, "text": str,
    "numeric": float, "label": float,
}


def request_models(schema: DataSchema) -> tuple[type[BaseModel], type[BaseModel]]:
    """Pydantic models of one event and of one score request, built from the schema's raw columns.

    They document the API (OpenAPI, generated clients); `EventParser` still does the validation, because
    its checks are the batch validator's own and its errors name index, column, config key and reason.

    Args:
        schema: the dataset schema.
    Returns:
        (Event: every column required but labels; ScoreRequest: also without event id and outcome fields).
    """
    parser = EventParser(schema)
    specs = {f.column: f for f in schema.fields.values()}
    keys = schema.column_keys
    outcome = {f.column for f in schema.fields.values() if f.outcome}

    def build(name: str, optional: set[str]) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        for i, (column, kind) in enumerate(parser._kinds.items()):
            spec = specs.get(column)
            nullable = kind == "label" or (spec is not None and spec.allow_null)
            annotation = _JSON_TYPES[kind] | None if nullable or column in optional else _JSON_TYPES[kind]
            extra = {"ge": spec.min, "le": spec.max} if spec is not None and spec.type == "numeric" else {}
            required = column not in optional and kind != "label" and column not in parser._optional_fields
            fields[f"f{i}"] = (annotation, Field(... if required else None, alias=column,
                                                 description=f"{kind} ({keys.get(column, 'event_id')})",
                                                 **{k: v for k, v in extra.items() if v is not None}))
        config = ConfigDict(extra="ignore", populate_by_name=True, title=name)
        return create_model(name, __config__=config, **fields)

    event = build(f"{schema.name.title()}Event", set())
    attempt = build(f"{schema.name.title()}ScoreRequest", outcome | {parser.event_id_column})
    return event, attempt
