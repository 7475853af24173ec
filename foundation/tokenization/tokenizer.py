"""EventTokenizer: turns per-entity sequence tables into encoded sequences (one list column per batch key).

Fitted once on the pretraining period and saved next to the model as JSON, so training, evaluation and the
online service encode events identically.

Example::

    tok = EventTokenizer.fit([customer_table, merchant_table], schema)  # pretraining period only
    encoded = tok.encode(customer_table)  # pa.Table of encoded sequences
    tok.save_pretrained("checkpoints/run/hf")
    EventTokenizer.from_pretrained("checkpoints/run/hf").field_specs()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from foundation.data.schema import DataSchema, FieldSpec
from foundation.tokenization import autotokenizer
from foundation.tokenization.encoders import (
    CategoricalEncoder,
    CategoricalFitter,
    NumericEncoder,
    NumericFitter,
    TimeEncoder,
    timestamp_ms,
)
from foundation.tokenization.text import TextEncoder, TextFitter

FORMAT_VERSION = 1
CONFIG_NAME = "tokenizer_config.json"
ENTITY_TYPES = ("customer", "merchant", "issuer")
KEY_COLUMNS = ("entity_type", "entity_id", "length", "event_id", "event_time")
REQUIRED_COLUMNS = ("entity_type", "entity_id", "length", "event_time")
FIELD_TYPES = ("categorical", "numeric", "timestamp", "text")
# Encoding works on slices of at most this many events: bounds memory and keeps text token offsets
# (events * max_tokens) inside int32 list offsets.
MAX_EVENTS_PER_SLICE = 4_000_000

FieldEncoder = CategoricalEncoder | NumericEncoder | TextEncoder


def _field_type(name: str, spec: FieldSpec) -> str:
    kind = spec.type  # checked by DataSchema.from_config; a spec built in code is checked here
    if kind not in FIELD_TYPES:
        raise ValueError(f"field {name!r}: type must be one of {FIELD_TYPES}, got {kind!r}")
    return kind


def _inferred_type(name: str, list_type: pa.DataType) -> str:
    """Type of a list column the schema does not declare (the agg_* columns of aggregate entities)."""
    value_type = list_type.value_type
    if name.startswith("agg_") or pa.types.is_integer(value_type) or pa.types.is_floating(value_type) \
            or pa.types.is_boolean(value_type):
        return "numeric"
    if pa.types.is_timestamp(value_type):
        return "timestamp"
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type) \
            or pa.types.is_dictionary(value_type):
        return "categorical"
    raise ValueError(f"column {name!r}: not in the schema and its type {list_type} cannot be encoded")


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


def _check_columns(table: pa.Table) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"sequence table lacks required columns {missing} (has {table.column_names})")


def _flat(table: pa.Table, column: str, lengths: np.ndarray) -> pa.Array:
    """Flat values of a list column, checked against the row lengths of the table."""
    data = table[column]
    if data.null_count:
        raise ValueError(f"column {column!r}: {data.null_count} rows hold a null list instead of a list")
    col_lengths = pc.list_value_length(data).to_numpy()
    if not np.array_equal(col_lengths, lengths):
        row = int(np.flatnonzero(col_lengths != lengths)[0])
        raise ValueError(f"column {column!r}: row {row} has {col_lengths[row]} values but length "
                         f"{lengths[row]} (entity {table['entity_id'][row].as_py()!r})")
    return pc.list_flatten(data).combine_chunks()


def _list_array(offsets: pa.Array, values: np.ndarray) -> pa.Array:
    """Rebuild list<values> (or list<list<values>> for 2-D values) on the given row offsets."""
    if values.ndim == 2:
        n, k = values.shape
        inner_offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.ListArray.from_arrays(inner_offsets, values.reshape(-1)))
    return pa.ListArray.from_arrays(offsets, pa.array(values))


class EventTokenizer:
    """Fitted encoders for the time, the fields and the label pass-through of event sequences.

    Build it with :meth:`fit` or :meth:`from_pretrained`, not directly.

    Attributes:
        entity_types: the entity type names; ``encode`` writes ``entity_type`` as an index into this list.
        encoders: one fitted encoder per field, in output order.
        label_names: label columns passed through as ``label_<name>``.
    """

    def __init__(self, time: TimeEncoder, encoders: list[FieldEncoder], label_names: list[str],
                 entity_types: Iterable[str] = ENTITY_TYPES, options: dict[str, Any] | None = None) -> None:
        self.time = time
        self.encoders = list(encoders)
        self.label_names = list(label_names)
        self.entity_types = list(entity_types)
        self.options = dict(options or {})
        self._by_name = {e.name: e for e in self.encoders}
        self._check_names()

    def _check_names(self) -> None:
        taken = set(KEY_COLUMNS) | set(TimeEncoder.output_columns)
        for column in [c for e in self.encoders for c in e.output_columns] + \
                [f"label_{n}" for n in self.label_names]:
            if column in taken:
                raise ValueError(f"encoded column {column!r} is produced twice; rename the field")
            taken.add(column)

    @property
    def field_names(self) -> list[str]:
        return [e.name for e in self.encoders]

    # ------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, tables: Iterable[pa.Table], schema: DataSchema, *, min_count: int = 5, max_vocab: int | None = None,
            num_bins: int = 32, num_time_bins: int = 32, max_gap_days: float = 90.0,
            text_vocab_size: int = 2000, max_tokens: int = 8, sample_size: int = 1_000_000,
            max_text_train_values: int = 1_000_000, seed: int = 0, progress: bool = True) -> EventTokenizer:
        """Fit vocabularies, bins and statistics in one pass over sequence tables.

        Pass tables of the **pretraining period only**: whatever is fitted here (vocabularies, quantile
        bins, means) is then known to every later stage, so later periods must not leak into it.

        Every list column that is not a key or label column is a field; its type comes from the schema, or
        for columns the schema does not declare (the ``agg_*`` columns of aggregate entities) from the
        arrow type (numbers -> numeric). Fields are the union over all tables (all entity types).

        Args:
            tables: sequence tables (foundation.data.sequences), any entity types, read once.
            schema: the dataset's DataSchema: its ``labels`` pass through; each field's ``type``,
                ``outcome``, ``min_count`` and ``extra`` (per-field overrides: ``num_bins`` (alias ``bins``),
                ``log``, ``max_vocab``, ``vocab_size``, ``max_tokens``) shape its encoder.
            min_count: categorical values seen fewer times map to OOV (when the field sets none).
            max_vocab: cap on categorical vocabulary size (most frequent kept), None = no cap.
            num_bins: quantile bins per numeric field.
            num_time_bins: log-spaced time-gap bins from 1 s to ``max_gap_days``.
            text_vocab_size: subword vocabulary size for text fields.
            max_tokens: subword ids kept per event for text fields.
            sample_size: values sampled per numeric field to compute its quantiles.
            max_text_train_values: distinct text values (most frequent first) used to train subwords.
            seed: seed of the numeric sampling.
            progress: show a progress bar over tables.
        Returns:
            The fitted EventTokenizer.
        """
        declared = schema.fields
        labels = list(schema.labels)
        options = {"min_count": min_count, "max_vocab": max_vocab, "num_bins": num_bins,
                   "num_time_bins": num_time_bins, "max_gap_days": max_gap_days,
                   "text_vocab_size": text_vocab_size, "max_tokens": max_tokens, "sample_size": sample_size,
                   "max_text_train_values": max_text_train_values, "seed": seed}
        fitters: dict[str, Any] = {}
        types: dict[str, str] = {}
        seen_labels: set[str] = set()
        for table in tqdm(tables, desc="fit tokenizer", unit="table", disable=not progress):
            _check_columns(table)
            lengths = pc.list_value_length(table["event_time"]).to_numpy(zero_copy_only=False)
            event_time_ms = timestamp_ms(_flat(table, "event_time", lengths), "event_time")
            for column in table.column_names:
                column_type = table.schema.field(column).type
                if column in KEY_COLUMNS or not _is_list(column_type):
                    continue
                if column in labels:
                    seen_labels.add(column)
                    continue
                kind = _field_type(column, declared[column]) if column in declared else \
                    _inferred_type(column, column_type)
                if column not in fitters:
                    types[column] = kind
                    fitters[column] = cls._fitter(column, kind, declared.get(column), options)
                fitters[column].update(_flat(table, column, lengths), event_time_ms)
        if not fitters:
            raise ValueError("fit saw no field columns: pass at least one non-empty sequence table")
        # Output order: schema order for declared fields, then undeclared (agg_*) columns by name.
        order = [n for n in declared if n in fitters] + sorted(n for n in fitters if n not in declared)
        options["field_types"] = types
        encoders = [fitters[n].finish() for n in tqdm(order, desc="finish encoders", disable=not progress)]
        return cls(TimeEncoder(TimeEncoder.log_edges(num_time_bins, 1.0, max_gap_days)), encoders,
                   [n for n in labels if n in seen_labels], ENTITY_TYPES, options)

    @staticmethod
    def _fitter(name: str, kind: str, spec: FieldSpec | None, opts: dict[str, Any]) -> Any:
        """The fitter of one field (spec None: a column the schema does not declare); ``opts`` are the fit()
        options, overridden by the field's encoder options (``spec.extra``)."""
        field_opts = dict(spec.extra) if spec is not None else {}
        if "bins" in field_opts:
            field_opts.setdefault("num_bins", field_opts["bins"])
        outcome = spec is not None and spec.outcome
        if kind == "categorical":
            min_count = spec.min_count if spec is not None else None
            return CategoricalFitter(name, int(min_count if min_count is not None else opts["min_count"]),
                                     field_opts.get("max_vocab", opts["max_vocab"]), outcome)
        if kind in ("numeric", "timestamp"):
            return NumericFitter(name, kind, int(field_opts.get("num_bins", opts["num_bins"])),
                                 bool(field_opts.get("log", True)), outcome, opts["sample_size"], opts["seed"])
        return TextFitter(name, int(field_opts.get("vocab_size", opts["text_vocab_size"])),
                          int(field_opts.get("max_tokens", opts["max_tokens"])), outcome,
                          opts["max_text_train_values"])

    # ------------------------------------------------------------ encoding

    def encode(self, table: pa.Table, progress: bool = False) -> pa.Table:
        """Encode a sequence table into encoded sequences, same rows in order.

        Fields absent from ``table`` are absent from the output; unseen categories map to OOV (id 1).

        Args:
            table: sequence table, rows time-ordered per entity.
            progress: show a progress bar over slices of large tables.
        Returns:
            pa.Table with entity_type (int64), entity_id, length, event_time (list<int64> epoch ms),
            time_gap_bin, time_gap, hour, dow, the field columns and label_<name> columns.
        """
        _check_columns(table)
        lengths = table["length"].to_numpy().astype(np.int64)
        bounds = self._slice_bounds(lengths)
        parts = [self._encode_slice(table.slice(a, b - a), lengths[a:b])
                 for a, b in tqdm(list(zip(bounds[:-1], bounds[1:])), desc="encode", disable=not progress)]
        return pa.concat_tables(parts) if parts else self._encode_slice(table, lengths)

    def encode_flat(self, columns: Mapping[str, pa.Array], event_time_ms: np.ndarray, offsets: np.ndarray
                    ) -> dict[str, np.ndarray]:
        """The per-event encoded values of events given as flat columns, without building sequence tables:
        what `encode` writes into its list columns (same encoders, same values), for a caller that needs a
        few events' values (the online scorer's attempts).

        Args:
            columns: field name -> (N,) flat values, as `encode` flattens them from its list columns; absent
                fields are absent from the output.
            event_time_ms: (N,) int64 epoch ms; offsets: (B + 1,) boundaries of the rows (time gaps restart).
        Returns:
            encoded column name -> (N,) values ((N, K) for text tokens): time_gap_bin, time_gap, hour, dow and
            the fields' columns.
        """
        out = dict(self.time.encode(event_time_ms, offsets))
        for encoder in self.encoders:
            if encoder.name in columns:
                out.update(encoder.encode(columns[encoder.name], event_time_ms))
        return out

    @staticmethod
    def _slice_bounds(lengths: np.ndarray) -> list[int]:
        """Row boundaries so that each slice holds at most MAX_EVENTS_PER_SLICE events (or one row)."""
        ends = np.cumsum(lengths)
        bounds, start = [0], 0
        while start < len(lengths):
            limit = (ends[start - 1] if start else 0) + MAX_EVENTS_PER_SLICE
            stop = max(int(np.searchsorted(ends, limit, side="right")), start + 1)
            bounds.append(stop)
            start = stop
        return bounds

    def _encode_slice(self, table: pa.Table, lengths: np.ndarray) -> pa.Table:
        if np.any(lengths < 0):
            raise ValueError("column 'length': negative lengths")
        entity_type = pc.index_in(table["entity_type"], value_set=pa.array(self.entity_types))
        if entity_type.null_count:
            bad = pc.filter(table["entity_type"], pc.is_null(entity_type)).unique().to_pylist()
            raise ValueError(f"column 'entity_type': unknown entity types {bad}; expected {self.entity_types}")
        offsets_np = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        offsets = pa.array(offsets_np)
        entity_ids = table["entity_id"].combine_chunks().cast(pa.string())
        event_time_ms = timestamp_ms(_flat(table, "event_time", lengths), "event_time")
        columns: dict[str, pa.Array] = {
            "entity_type": entity_type.cast(pa.int64()).combine_chunks(),
            "entity_id": entity_ids,
            "length": pa.array(lengths.astype(np.int32)),
            "event_time": _list_array(offsets, event_time_ms),
        }
        for name, values in self.time.encode(event_time_ms, offsets_np, entity_ids).items():
            columns[name] = _list_array(offsets, values)
        unknown = [c for c in table.column_names if c not in KEY_COLUMNS and c not in self._by_name
                   and c not in self.label_names and _is_list(table.schema.field(c).type)]
        if unknown:
            raise ValueError(f"columns {unknown} were not seen when the tokenizer was fitted")
        for encoder in self.encoders:
            if encoder.name in table.column_names:
                for name, values in encoder.encode(_flat(table, encoder.name, lengths), event_time_ms).items():
                    columns[name] = _list_array(offsets, values)
        for label in self.label_names:
            if label in table.column_names:
                flat = pc.fill_null(pc.cast(_flat(table, label, lengths), pa.float32()), float("nan"))
                columns[f"label_{label}"] = pa.ListArray.from_arrays(offsets, flat)
        return pa.table(columns)

    # ------------------------------------------------------------ model interface

    def field_specs(self) -> list[dict[str, Any]]:
        """What the model is built from: the time spec first, then one dict per field in output order.

        Returns:
            e.g. [{"name": "time", "kind": "time", "num_bins": 34},
                  {"name": "mcc", "kind": "categorical", "vocab_size": V, "outcome": False},
                  {"name": "amount", "kind": "numeric", "num_bins": N, "outcome": False},
                  {"name": "descriptor", "kind": "text", "vocab_size": V, "max_tokens": K, "outcome": False}];
            sizes include the special ids (0 pad, 1 null/OOV).
        """
        return [self.time.spec()] + [e.spec() for e in self.encoders]

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "tokenizer_class": type(self).__name__,
                "entity_types": self.entity_types, "label_names": self.label_names, "options": self.options,
                "time": self.time.to_dict(), "fields": [e.to_dict() for e in self.encoders]}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer_config.json (plus one HF tokenizers JSON per text field) into ``directory``.

        The config also carries an `auto_map` entry so `transformers.AutoTokenizer.from_pretrained(directory)`
        fails with an error naming this method instead of a sentencepiece message (tokenization/autotokenizer.py).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for encoder in self.encoders:
            if isinstance(encoder, TextEncoder):
                encoder.save(directory)
        state = {**self.to_dict(), "auto_map": autotokenizer.AUTO_MAP}
        (directory / CONFIG_NAME).write_text(json.dumps(state, indent=1))
        autotokenizer.write_redirect(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> EventTokenizer:
        """Load a tokenizer written by :meth:`save_pretrained`.

        Raises:
            FileNotFoundError: no tokenizer_config.json in ``directory``.
            ValueError: the files were written by a newer (unknown) format version.
        """
        directory = Path(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        state = json.loads(path.read_text())
        version = state.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"{path}: tokenizer format_version {version!r} is not supported by this code "
                             f"(supports 1..{FORMAT_VERSION}); upgrade the foundation package to load it")
        encoders: list[FieldEncoder] = []
        for field_state in state["fields"]:
            kind = field_state["kind"]
            if kind == "categorical":
                encoders.append(CategoricalEncoder.from_dict(field_state))
            elif kind == "numeric":
                encoders.append(NumericEncoder.from_dict(field_state))
            elif kind == "text":
                encoders.append(TextEncoder.from_dict(field_state, directory))
            else:
                raise ValueError(f"{path}: field {field_state.get('name')!r} has unknown kind {kind!r}")
        return cls(TimeEncoder.from_dict(state["time"]), encoders, state["label_names"],
                   state["entity_types"], state.get("options"))
