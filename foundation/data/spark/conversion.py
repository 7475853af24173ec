"""Raw Spark columns -> canonical values, the Spark twin of `foundation.data.events.convert_events`.

Each canonical column gets a Spark expression for its value and, where a present value can fail to convert,
a flag column (True = the raw value was there and did not convert). The rules are those of the pyarrow
backend, value for value, including its few column-wide choices (a float id column is written as integers
only when every value is integral; an ISO time column accepts hour-only values only when every value is
in Arrow's cast format); those are decided by one small aggregate before the conversion.

Times are carried as epoch milliseconds (long) so nothing depends on Spark's microsecond timestamps;
`to_timestamp_ms` turns them back into timestamps at the end.

Known differences (documented in docs/guide/spark.md): impossible calendar dates under a `format`
(2024-02-30) are unparsable here but rolled over by Arrow's strptime; non-integral floats used as ids or
categories print in Java's float format; timestamps and binary used as ids or categories print in Spark's
format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from foundation.data.events import _ISO_RE, _NUMBER_RE
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.spark.source import col

_EPOCH_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_EPOCH_DIV = {"us": 1000, "ns": 1_000_000}
# What Arrow's string -> timestamp[ms] cast accepts (checked against pyarrow): a date, optionally an hour,
# minutes, seconds and up to 3 fraction digits; no zone, no spaces around.
_ARROW_ISO_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,3})?)?)?)?$"
# pyarrow's ISO grammar as a Java regex (unnamed groups: date, time, fraction, zone), and the same with an
# hour-only time allowed.
_ISO_JAVA = re.sub(r"\?P<\w+>", "", _ISO_RE)
_ISO_HOUR_JAVA = _ISO_JAVA.replace(r"(\d{2}:\d{2}(?::\d{2})?)", r"(\d{2}(?::\d{2}(?::\d{2})?)?)")
if _ISO_HOUR_JAVA == _ISO_JAVA:
    raise RuntimeError("foundation.data.events._ISO_RE changed shape; update the Spark ISO parser to match it")
_STRPTIME = {"Y": "yyyy", "m": "M", "d": "d", "H": "H", "M": "m", "S": "s", "y": "yy", "b": "MMM", "B": "MMMM",
             "p": "a", "I": "h", "j": "D", "a": "EEE", "A": "EEEE"}
_FIXED = {"m": "MM", "d": "dd", "H": "HH", "M": "mm", "S": "ss", "I": "hh", "j": "DDD"}


@dataclass
class Converted:
    """One canonical column.

    Attributes:
        name: canonical column name.
        value: the canonical value (string, double, or epoch ms as long for times).
        failed: True on rows whose present raw value did not convert (None: this column cannot fail).
        reason, column, key, problem: how a failure is reported (as `ConversionIssue`).
        string_source: the raw column holds strings (empty keys are only looked for there).
    """

    name: str
    value: Column
    failed: Column | None = None
    reason: str = ""
    column: str = ""
    key: str = ""
    problem: str = ""
    string_source: bool = False


def to_timestamp_ms(ms: Column) -> Column:
    """Epoch milliseconds -> Spark timestamp (an instant; shown in the session time zone, UTC)."""
    return F.timestamp_millis(ms)


def convert_columns(frame: DataFrame, schema: DataSchema, row: Column, raw_arrow: pa.Schema | None = None
                    ) -> list[Converted]:
    """Plan the canonical columns of `frame` (raw columns) in canonical order.

    Args:
        frame: raw events (the schema's raw column names, Spark types).
        schema: the dataset schema.
        row: the input row number column (the event id when the schema has no id column).
        raw_arrow: the raw columns' Arrow types when known (nanosecond timestamps arrive as long; a
            dictionary-encoded key is not a string column for the empty-key check, as in pyarrow).
    Returns:
        one `Converted` per column of the canonical event table, in order.
    Raises:
        DataValidationError: a column whose type cannot be converted at all, or numeric times without a unit.
    """
    schema.check_columns(frame.columns)
    planner = _Planner(frame, schema, raw_arrow)
    ts = schema.timestamp
    jobs: list[tuple[str, Any]] = [
        ("event_id", ("rows",) if schema.event_id is None else ("string", schema.event_id)),
        ("event_time", ("time", ts.column, ts.unit, ts.format, "unparsable_timestamp"))]
    jobs += [(ent.id_column, ("string", ent.column)) for ent in schema.entities.values()]
    added = None if schema.label_events is None else schema.label_events.field
    for spec in schema.fields.values():
        if spec.name == added and spec.column not in frame.columns:  # landed labels: appended after validation
            jobs.append((spec.name, ("null", None, "string")))
        elif spec.type == "numeric":
            jobs.append((spec.name, ("float", spec.column, f"wrong_type.{spec.name}")))
        elif spec.type == "timestamp":
            jobs.append((spec.name, ("time", spec.column, spec.unit, spec.format,
                                     f"unparsable_timestamp.{spec.name}")))
        else:
            jobs.append((spec.name, ("string", spec.column)))
    # A derived label (from_events) is null here: only the pyarrow path, which fine-tuning reads, derives it.
    jobs += [(label.name, ("label", label.column, label.name) if label.from_events is None
              else ("null", None, "double")) for label in schema.labels.values()]
    for _, job in jobs:  # column-wide facts first, so they are computed in one pass
        planner.request(job)
    planner.resolve_facts()
    out = []
    for name, job in jobs:
        if job[0] == "rows":
            out.append(Converted(name, row.cast("string")))
        elif job[0] == "null":
            out.append(Converted(name, F.lit(None).cast(job[2])))
        else:
            out.append(planner.convert(name, job))
    return out


class _Planner:
    """Builds the conversion expressions; collects the column-wide facts they need into one aggregate."""

    def __init__(self, frame: DataFrame, schema: DataSchema, raw_arrow: pa.Schema | None):
        self.frame, self.schema, self.raw_arrow = frame, schema, raw_arrow
        self.keys = schema.column_keys
        self.types = {f.name: f.dataType for f in frame.schema.fields}
        self.fact_exprs: dict[str, Column] = {}
        self.facts: dict[str, Any] = {}

    # --- column-wide facts ---------------------------------------------------------------------------

    def request(self, job: tuple) -> None:
        kind, column = job[0], job[1] if len(job) > 1 else None
        if column is None:
            return
        dtype = self.types[column]
        if kind == "string" and isinstance(dtype, (T.FloatType, T.DoubleType)):
            v = col(column).cast("double")
            integral = F.when(v.isNull(), True).otherwise(~F.isnan(v) & (F.abs(v) != float("inf"))
                                                          & (F.floor(v) == v))
            self.fact_exprs[f"integral:{column}"] = F.min(integral.cast("int"))
        if kind == "time" and isinstance(dtype, T.StringType):
            unit, fmt = job[2], job[3]
            if unit is not None:  # numeric epochs as strings: is any value not a number at all?
                _, bad = _parse_number(col(column))
                self.fact_exprs[f"not_number:{column}"] = F.max(bad.cast("int"))
            elif fmt is None:  # ISO strings: does every value pass Arrow's own cast?
                ok = F.when(col(column).isNull(), True).otherwise(
                    col(column).rlike(_ARROW_ISO_RE) & _iso_millis(col(column), allow_hour_only=True).isNotNull())
                self.fact_exprs[f"arrow_iso:{column}"] = F.min(ok.cast("int"))

    def resolve_facts(self) -> None:
        if self.fact_exprs:
            names = list(self.fact_exprs)
            row = self.frame.agg(*[self.fact_exprs[n].alias(f"f{i}") for i, n in enumerate(names)]).first()
            self.facts = {n: row[f"f{i}"] for i, n in enumerate(names)}

    # --- conversions ---------------------------------------------------------------------------------

    def convert(self, name: str, job: tuple) -> Converted:
        kind, column = job[0], job[1]
        if kind == "string":
            value, string_source = self._string(column)
            return Converted(name, value, string_source=string_source, column=column,
                             key=self.keys.get(column, column))
        if kind == "float":
            value, failed = self._float(column)
            return self._converted(name, value, failed, job[2], column, "value is not a number")
        if kind == "label":
            value, failed = self._float(column)
            value = F.when(F.isnan(value), F.lit(None).cast("double")).otherwise(value)
            return self._converted(name, value, failed, f"wrong_type.{job[2]}", column, "value is not a number")
        _, column, unit, fmt, reason = job
        value, failed, problem = self._time(column, unit, fmt)
        return self._converted(name, value, failed, reason, column, problem)

    def _converted(self, name, value, failed, reason, column, problem) -> Converted:
        return Converted(name, value, failed, reason, column, self.keys.get(column, column), problem)

    def _type_error(self, column: str, expected: str) -> DataValidationError:
        return DataValidationError(f"column '{column}' ({self.keys.get(column, 'column')}): has type "
                                   f"{self.types[column].simpleString()}, which cannot be converted to {expected}")

    def _arrow_type(self, column: str) -> pa.DataType | None:
        if self.raw_arrow is None or column not in self.raw_arrow.names:
            return None
        return self.raw_arrow.field(column).type

    def _string(self, column: str) -> tuple[Column, bool]:
        dtype, c = self.types[column], col(column)
        arrow = self._arrow_type(column)
        is_string = isinstance(dtype, T.StringType) and (
            arrow is None or pa.types.is_string(arrow) or pa.types.is_large_string(arrow))
        if isinstance(dtype, T.StringType):
            return c, is_string
        if isinstance(dtype, (T.FloatType, T.DoubleType)):
            v = c.cast("double")
            if self.facts.get(f"integral:{column}"):
                return v.cast("long").cast("string"), False
            # Arrow prints integral floats without ".0"; other values keep Spark's format.
            whole = (F.floor(v) == v) & (F.abs(v) < 1e15)
            return F.when(whole, v.cast("long").cast("string")).otherwise(v.cast("string")), False
        if isinstance(dtype, (T.IntegralType, T.BooleanType, T.DecimalType, T.NullType, T.BinaryType,
                              T.TimestampType, T.TimestampNTZType, T.DateType)):
            return c.cast("string"), False
        raise self._type_error(column, "string")

    def _float(self, column: str) -> tuple[Column, Column | None]:
        dtype, c = self.types[column], col(column)
        if isinstance(dtype, (T.NumericType, T.BooleanType, T.NullType)):
            return c.cast("double"), None
        if not isinstance(dtype, T.StringType):
            raise self._type_error(column, "a number (float64)")
        return _parse_number(c)

    def _time(self, column: str, unit: str | None, fmt: str | None) -> tuple[Column, Column | None, str]:
        dtype, c = self.types[column], col(column)
        arrow = self._arrow_type(column)
        if isinstance(dtype, T.LongType) and arrow is not None and pa.types.is_timestamp(arrow):
            # A nanosecond parquet timestamp (read as int64, spark.sql.legacy.parquet.nanosAsLong).
            return F.expr(f"{_sql(column)} div {_EPOCH_DIV.get(arrow.unit, 1)}"), None, ""
        if isinstance(dtype, T.TimestampType):
            return F.expr(f"unix_micros({_sql(column)}) div 1000"), None, ""  # truncates, like Arrow's cast
        if isinstance(dtype, T.TimestampNTZType):  # naive = UTC; the session time zone is UTC
            return F.expr(f"unix_micros(cast({_sql(column)} as timestamp)) div 1000"), None, ""
        if isinstance(dtype, T.DateType):
            return F.unix_date(c).cast("long") * 86_400_000, None, ""
        if isinstance(dtype, T.NullType):
            return F.lit(None).cast("long"), None, ""
        if isinstance(dtype, T.NumericType):
            if unit is None:
                raise DataValidationError(
                    f"column '{column}' ({self.keys.get(column, 'column')}): holds "
                    f"{dtype.simpleString()} numbers; set the epoch unit (unit: s | ms | us | ns) next to the "
                    f"column name")
            return _epoch(c, dtype, unit, column)
        if not isinstance(dtype, T.StringType):
            raise self._type_error(column, "a timestamp")
        if unit is not None:  # numeric epochs read from CSV arrive as strings
            numbers, not_number = _parse_number(c)
            ms, not_finite, finite_problem = _epoch(numbers, T.DoubleType(), unit, column)
            if self.facts.get(f"not_number:{column}"):
                # As in pyarrow: when some values are not numbers at all, those are the issue, and a
                # non-finite number just becomes a null time.
                return ms, not_number, f"value is not a numeric epoch in {unit}"
            return ms, not_finite, finite_problem
        if fmt is not None:
            # Whole seconds (strptime has no fraction directive), so unix_millis is exact.
            ms = F.unix_millis(F.try_to_timestamp(c, F.lit(strptime_to_java(fmt))))
            return ms, c.isNotNull() & ms.isNull(), f"value does not match format '{fmt}'"
        arrow_only = bool(self.facts.get(f"arrow_iso:{column}"))
        ms = _iso_millis(c if arrow_only else F.trim(c), allow_hour_only=arrow_only)
        return ms, c.isNotNull() & ms.isNull(), "value is not an ISO-8601 date/time"


def _sql(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _parse_number(c: Column) -> tuple[Column, Column]:
    """String -> double the pyarrow way: trimmed, blank = null (not an error), else a decimal/exponent
    number, nan or inf (any case); anything else is null and flagged."""
    text = F.trim(c)
    text = F.when(text == "", F.lit(None).cast("string")).otherwise(text)
    ok = text.rlike(_NUMBER_RE)
    value = F.when(ok, text.try_cast("double"))
    return value, text.isNotNull() & ~F.coalesce(ok, F.lit(False))


def _epoch(values: Column, dtype: T.DataType, unit: str, column: str) -> tuple[Column, Column | None, str]:
    """Numeric epoch in `unit` -> epoch ms (integers exactly; floats floored, non-finite flagged)."""
    if isinstance(dtype, T.IntegralType):
        if unit == "ms":
            return values.cast("long"), None, ""
        if unit == "s":
            return values.cast("long") * 1000, None, ""
        # SQL `div` truncates toward zero like Arrow's integer divide, and stays exact beyond 2**53.
        return F.expr(f"cast({_sql(column)} as long) div {_EPOCH_DIV[unit]}"), None, ""
    v = values.cast("double")
    finite = ~F.isnan(v) & (F.abs(v) != float("inf"))
    ms = F.when(finite, F.floor(v * _EPOCH_MS[unit]).cast("long"))
    return ms, v.isNotNull() & ~finite, f"value is not a finite epoch in {unit}"


def _iso_millis(text: Column, allow_hour_only: bool = False) -> Column:
    """ISO-8601 'YYYY-MM-DD[ T]HH:MM[:SS][.fff][Z|+HH:MM]' -> epoch ms (offsets applied), null otherwise;
    impossible dates (2024-02-30) are null. The same grammar as pyarrow's `_parse_iso`, plus an hour-only
    time when `allow_hour_only` (what Arrow's cast accepts)."""
    java = _ISO_HOUR_JAVA if allow_hour_only else _ISO_JAVA
    day = F.regexp_extract(text, java, 1)
    clock = F.regexp_extract(text, java, 2)
    frac = F.regexp_extract(text, java, 3)
    zone = F.regexp_extract(text, java, 4)
    matched = text.rlike(java)
    clock = F.when(clock == "", F.lit("00:00:00")).when(F.length(clock) == 2, F.concat(clock, F.lit(":00:00"))) \
        .when(F.length(clock) == 5, F.concat(clock, F.lit(":00"))).otherwise(clock)
    base = F.concat_ws(" ", day, clock)
    seconds = F.try_to_timestamp(base, F.lit("yyyy-MM-dd HH:mm:ss"))
    # Round trip: Spark's strict resolver already rejects 2024-02-30 and 24:00, this catches anything else.
    valid = matched & seconds.isNotNull() & (F.date_format(seconds, "yyyy-MM-dd HH:mm:ss") == base)
    frac_ms = F.when(frac == "", F.lit(0)).otherwise(F.rpad(F.substring(frac, 2, 3), 3, "0").cast("long"))
    sign = F.when(F.substring(zone, 1, 1) == "-", F.lit(-1)).otherwise(F.lit(1))
    digits = F.regexp_replace(zone, r"[^0-9]", "")
    offset_min = F.when(F.length(digits) == 4, F.substring(digits, 1, 2).cast("long") * 60
                        + F.substring(digits, 3, 2).cast("long")).otherwise(F.lit(0))
    ms = F.unix_seconds(seconds) * 1000 + frac_ms - sign * offset_min * 60_000
    return F.when(valid, ms.cast("long"))


def strptime_to_java(fmt: str) -> str:
    """A strptime format ("%d/%m/%Y %H:%M") -> a Java DateTimeFormatter pattern ("d/M/yyyy H:m").

    Fields read 1-2 digits like strptime, except next to another numeric field ("%Y%m%d"), where they take
    their fixed width so the boundary is known. Literal text is quoted.

    Raises:
        ValueError: a directive with no Spark equivalent (e.g. %z, %f, %U).
    """
    out, literal = [], []
    tokens = re.findall(r"%.|[^%]", fmt)
    for i, token in enumerate(tokens):
        if not token.startswith("%") or token == "%%":
            literal.append("%" if token == "%%" else token)
            continue
        if literal:
            out.append("'" + "".join(literal).replace("'", "''") + "'")
            literal = []
        code = token[1]
        if code not in _STRPTIME:
            raise ValueError(f"timestamp format {fmt!r}: directive {token} is not supported by the Spark backend")
        neighbours = [tokens[j] for j in (i - 1, i + 1) if 0 <= j < len(tokens)]
        adjacent = any(t.startswith("%") and t != "%%" and t[1:] in "YmdHMSyIj" for t in neighbours)
        out.append(_FIXED[code] if adjacent and code in _FIXED else _STRPTIME[code])
    if literal:
        out.append("'" + "".join(literal).replace("'", "''") + "'")
    return "".join(out)
