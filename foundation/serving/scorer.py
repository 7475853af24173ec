"""Online scoring from the live state: exactly what training wrote, the section-8 features, a state cache.

Loads the tokenizer (`EventTokenizer.from_pretrained`) and the model (`FoundationModel.from_pretrained`)
from `<checkpoint>/hf`, the data schema from the run's `config.yaml`, and the task heads from a fine-tune
run (`foundation.heads.load_head(<run>/heads/<task>/<head>)`).

Speed: h(t) depends only on the entity's events strictly before t, so the state after an entity's last
event serves every later attempt until the entity's next event. States are cached per entity with the
store `version` they were computed at and the range of cut-offs they are valid for; an ingest changes the
version (and drops the entry), so a hit is exact. A scored attempt then costs one event embedding and
the heads; a miss adds one causal pass over at most max_position events.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import time_ns
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from foundation.data.aggregates import AggregateSpec, count_column_name, resolve_aggregate_spec
from foundation.data.schema import DataSchema
from foundation.serving.features import (
    bucket_rows,
    event_batch,
    event_rows,
    event_vectors,
    task_features,
    window_batch,
    window_start,
)
from foundation.serving.schemas import Attempt, EventParser, RequestError
from foundation.serving.state import EntityHistory, EventRecord, StateStore

logger = logging.getLogger(__name__)
Key = tuple[int, str]  # (event_time ms, event_id): the order of an entity's sequence


@dataclass(frozen=True)
class EntityState:
    """An entity's point-in-time state.

    Args:
        hidden: (H,) hidden state after the last included event (zeros without history).
        has_history: whether any event is included.
        index: index of that event (bucket) in the entity's full sequence; -1 without history.
        last_time: its event_time (bucket end) in epoch ms; None without history.
    """

    entity_type: str
    entity_id: str
    hidden: np.ndarray
    has_history: bool
    index: int
    last_time: int | None


@dataclass(frozen=True)
class _Cached:
    """A state valid for cut-offs c with lo < c <= hi (None: unbounded) at one store version."""

    version: int
    lo: Key | None
    hi: Key | None
    state: EntityState

    def covers(self, version: int, cut: Key | None) -> bool:
        if version != self.version:
            return False
        if cut is None:
            return self.hi is None
        return (self.lo is None or self.lo < cut) and (self.hi is None or cut <= self.hi)


@dataclass(frozen=True)
class ServedHead:
    """A fine-tuned task head and what it reads.

    Args:
        task: task name (fraud, authorization).
        output: response key (fraud_probability, approval_probability).
        entities: entity types whose states form the features, in order.
        model: object with predict_proba(features (N, D)) -> (N,).
        threshold: decision threshold chosen on validation (reported, not applied).
        name: head directory (task/head).
    """

    task: str
    output: str
    entities: list[str]
    model: Any
    threshold: float | None
    name: str


class Scorer:
    """Entity states, embeddings and task probabilities from a StateStore.

    Args:
        model: FoundationModel in eval mode.
        tokenizer: the EventTokenizer saved with it.
        schema: the data schema it was trained on.
        heads: the served task heads (may be empty: embeddings only).
        aggregate_specs: entity type -> AggregateSpec for `representation: aggregate` entities.
        model_version: reported with every score.
        cache_size: entities whose state is cached.
    """

    def __init__(self, model: Any, tokenizer: Any, schema: DataSchema, heads: Sequence[ServedHead] = (),
                 aggregate_specs: Mapping[str, AggregateSpec] | None = None, model_version: str = "unversioned",
                 cache_size: int = 100_000):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.schema = schema
        self.heads = list(heads)
        self.aggregate_specs = dict(aggregate_specs or {})
        self.model_version = model_version
        self.field_specs = tokenizer.field_specs()
        self.max_len = int(model.config.max_position)
        self.canonical = schema.canonical_schema()
        self.fields = [name for name in schema.fields if name in set(tokenizer.field_names)]
        # The attempt's event vector is encoded in the sequence of the first entity (the customer).
        self.event_entity = next(iter(schema.entities))
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.cache_hits = self.cache_misses = 0
        missing = [e for h in self.heads for e in h.entities if e not in schema.entities]
        if missing:
            raise ValueError(f"heads read entity types {missing} that the data schema does not declare")
        hidden = int(model.config.hidden_size)
        for head in self.heads:
            expected = len(head.entities) * hidden + hidden + len(head.entities)
            found = getattr(head.model, "n_features", None)
            if found is not None and int(found) != expected:
                raise ValueError(
                    f"head {head.name} expects {found} features; serving builds {expected} = "
                    f"[h_{', h_'.join(head.entities)}, event_vector, has_history flags] "
                    f"(foundation.serving.features.task_features, H={hidden})")

    @property
    def max_events(self) -> int:
        """Events the state must keep per entity: a full window plus the predecessor of its first event."""
        return self.max_len + 1

    # ------------------------------------------------------------------ states

    def _cut(self, entity_type: str, time: int | None, event_id: str | None) -> Key | None:
        """Cut-off key: items with key < cut are in the state. A bucket is in it once closed (end <= time);
        without a time, "now" is the wall clock for buckets (the current one is still open) and "after
        every retained event" for raw-event entities."""
        if entity_type in self.aggregate_specs:
            return ((time if time is not None else time_ns() // 1_000_000) + 1, "")
        if time is None:
            return None
        return (time, event_id or "")

    def entity_states(self, refs: Sequence[tuple[str, str]], store: StateStore, time: int | None = None,
                      event_id: str | None = None, on_cache: Any = None) -> list[EntityState]:
        """States of several entities as of (time, event_id): after their last event strictly before it
        (buckets: closed at or before time); time None = after every retained event.

        Raises:
            RequestError 409: the cut-off is older than the retained history can reproduce exactly.
        """
        versions = store.versions(refs)
        states: list[EntityState | None] = [None] * len(refs)
        todo = []
        with self._lock:
            for k, (ref, version) in enumerate(zip(refs, versions)):
                entry = self._cache.get(ref)
                if entry is not None and entry.covers(version, self._cut(ref[0], time, event_id)):
                    self._cache.move_to_end(ref)
                    states[k] = entry.state
                else:
                    todo.append(k)
            self.cache_hits += len(refs) - len(todo)
            self.cache_misses += len(todo)
        if on_cache is not None:
            on_cache(len(refs) - len(todo), len(todo))
        if todo:
            for k, history in zip(todo, store.histories([refs[k] for k in todo])):
                entry = self._compute(history, self._cut(history.entity_type, time, event_id))
                states[k] = entry.state
                self._remember((history.entity_type, history.entity_id), entry)
        return states  # type: ignore[return-value]

    def _remember(self, ref: tuple[str, str], entry: _Cached) -> None:
        with self._lock:
            current = self._cache.get(ref)
            if current is None or current.version <= entry.version:
                self._cache[ref] = entry
                self._cache.move_to_end(ref)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def invalidate(self, refs: Sequence[tuple[str, str]]) -> None:
        """Drop cached states of entities that just changed (their version moved on anyway)."""
        with self._lock:
            for ref in refs:
                self._cache.pop(ref, None)

    def _sequence(self, history: EntityHistory) -> pa.Table:
        spec = self.aggregate_specs.get(history.entity_type)
        if spec is not None:
            return bucket_rows(history.entity_type, history.entity_id, history.events, spec)
        return event_rows(history.entity_type, history.entity_id, history.events, self.canonical, self.fields)

    @torch.inference_mode()
    def _compute(self, history: EntityHistory, cut: Key | None) -> _Cached:
        etype, eid = history.entity_type, history.entity_id
        empty = EntityState(etype, eid, np.zeros(self.model.config.hidden_size, np.float32), False, -1, None)
        if not history.events:
            return _Cached(history.version, None, None, empty)
        table = self._sequence(history)
        times = pc.list_flatten(table["event_time"]).cast(pa.int64()).to_pylist()
        keys = list(zip(times, pc.list_flatten(table["event_id"]).to_pylist()))
        n_in = len(keys) if cut is None else sum(1 for key in keys if key < cut)
        first = history.n_events - len(keys)  # full-sequence index of keys[0]
        hi = keys[n_in] if n_in < len(keys) else None
        if n_in == 0:
            if first > 0:
                raise RequestError(409, f"{etype} {eid!r}: the requested time precedes the {len(keys)} retained "
                                        "events; its point-in-time state is no longer available online")
            return _Cached(history.version, None, hi, empty)
        last = first + n_in - 1
        start = window_start(last, self.max_len)
        if start - 1 < first and start > 0:
            # The window's first event needs its predecessor (time gap), which was evicted.
            raise RequestError(409, f"{etype} {eid!r}: the requested time is too far in the past for the "
                                    f"retained history ({len(keys)} events); use the batch embeddings")
        encoded = self.tokenizer.encode(table)
        batch = window_batch(encoded, self.field_specs, start - first, last - start + 1)
        hidden = self.model(batch).entity_embedding[0].float().numpy().copy()  # (H,)
        state = EntityState(etype, eid, hidden, True, last, keys[n_in - 1][0])
        return _Cached(history.version, keys[n_in - 1], hi, state)

    # ------------------------------------------------------------------ events

    @torch.inference_mode()
    def event_vector(self, record: EventRecord, previous_time: int | None) -> np.ndarray:
        """(H,) event vector of an attempt: its event embedding in the event entity's sequence (time gap to
        that entity's previous event) with the outcome fields removed."""
        etype = self.event_entity
        eid = record.payload.get(f"{etype}_id") or ""
        events = [record.payload]
        if previous_time is not None:  # only its time matters: the gap of the attempt
            events = [{"event_id": "", "event_time": previous_time}, record.payload]
        encoded = self.tokenizer.encode(event_rows(etype, eid, events, self.canonical, self.fields))
        batch = event_batch(encoded, self.field_specs, len(events) - 1)
        return event_vectors(self.model, batch, self.field_specs)[0, 0].float().numpy()

    def score(self, attempt: Attempt, store: StateStore, on_cache: Any = None) -> dict[str, Any]:
        """Probabilities of every served head for one charge attempt (state as of just before it)."""
        if not self.heads:
            raise RequestError(503, "no task heads loaded (finetune_run is not set): only embeddings are served")
        record = attempt.record
        types = list(dict.fromkeys([self.event_entity] + [e for h in self.heads for e in h.entities]))
        refs = [(t, record.payload[f"{t}_id"]) for t in types]
        event_id = record.event_id if attempt.has_event_id else None
        states = dict(zip(types, self.entity_states(refs, store, record.event_time, event_id, on_cache)))
        vector = self.event_vector(record, states[self.event_entity].last_time)
        out: dict[str, Any] = {"event_id": record.event_id if attempt.has_event_id else None,
                               "model_version": self.model_version}
        for head in self.heads:
            features = task_features([states[e].hidden for e in head.entities],
                                     [states[e].has_history for e in head.entities], vector)
            out[head.output] = float(np.asarray(head.model.predict_proba(features[None, :])).reshape(-1)[0])
        out["thresholds"] = {h.output: h.threshold for h in self.heads}
        out["has_history"] = {t: s.has_history for t, s in states.items()}
        return out

    def embedding(self, entity_type: str, entity_id: str, store: StateStore, as_of: int | None = None,
                  on_cache: Any = None) -> dict[str, Any]:
        """The entity's embedding after its last event (as_of None) or its last event strictly before as_of
        (an aggregate entity: its last bucket closed at or before as_of)."""
        state = self.entity_states([(entity_type, entity_id)], store, as_of, None, on_cache)[0]
        return {"entity_type": entity_type, "entity_id": entity_id, "model_version": self.model_version,
                "has_history": state.has_history, "index": state.index,
                "last_event_time": None if state.last_time is None else EventParser.format_time(state.last_time),
                "as_of": None if as_of is None else EventParser.format_time(as_of),
                "embedding": state.hidden.tolist()}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, finetune_run: str | Path | None = None,
                        heads: Mapping[str, Mapping[str, Any]] | None = None, fallback_data: Any = None,
                        cache_size: int = 100_000, torch_threads: int | None = 1) -> Scorer:
        """Load what training wrote.

        Args:
            checkpoint: pretraining run folder (with hf/ and config.yaml) or its hf/ folder.
            finetune_run: fine-tune run folder with heads/<task>/<head>/ (None: embeddings only).
            heads: task -> {"head": head name or None (the only one), "output": response key}.
            fallback_data: data config used when the run has no config.yaml (a warning is logged).
            cache_size: entities whose state is cached.
            torch_threads: intra-op threads (None leaves torch's default).
        """
        from foundation.model import FoundationModel
        from foundation.tokenization import EventTokenizer

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        hf, run = _locate(Path(checkpoint))
        tokenizer = EventTokenizer.from_pretrained(hf)
        model = FoundationModel.from_pretrained(hf).eval()
        schema = _run_schema(run, fallback_data)
        specs = aggregate_specs(schema, tokenizer)
        served = load_heads(Path(finetune_run), heads or {}) if finetune_run else []
        version = f"{run.name}@{_digest(hf)}" + (f"+{Path(finetune_run).name}" if finetune_run else "")
        return cls(model, tokenizer, schema, served, specs, version, cache_size)


def _locate(checkpoint: Path) -> tuple[Path, Path]:
    """(hf folder, run folder) of a checkpoint path that names either."""
    hf = checkpoint if (checkpoint / "config.json").exists() else checkpoint / "hf"
    if not (hf / "config.json").exists():
        raise FileNotFoundError(f"checkpoint {checkpoint}: no hf/config.json (expected a pretraining run folder)")
    return hf, hf.parent


def _digest(hf: Path) -> str:
    weights = sorted(hf.glob("*.safetensors"))
    digest = hashlib.sha256()
    for path in weights:
        with open(path, "rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def _run_schema(run: Path, fallback_data: Any) -> DataSchema:
    """The data schema the run was trained with (its config.yaml); else the serve config's `data`."""
    config = run / "config.yaml"
    if config.exists():
        from omegaconf import OmegaConf

        return DataSchema.from_config(OmegaConf.load(config).data)
    if fallback_data is None:
        raise FileNotFoundError(f"{config} not found and no data config given: cannot tell the event schema")
    logger.warning("%s not found: using the serve config's data schema; make sure it is the training one", config)
    return DataSchema.from_config(fallback_data)


def aggregate_specs(schema: DataSchema, tokenizer: Any) -> dict[str, AggregateSpec]:
    """AggregateSpec of each aggregate entity type, as the training sequences computed it.

    The counted values (`agg_n_<value>`) are the values of the count field (event_type) whose count column
    the tokenizer was fitted on; every agg_* column the tokenizer knows must be reproduced, else an error.
    """
    fields = [(f.name, f.type) for f in schema.fields.values()]
    known = {name for name in tokenizer.field_names if name.startswith("agg_")}
    empty = schema.canonical_schema().empty_table()
    out = {}
    for ent in schema.entities.values():
        if ent.representation != "aggregate":
            continue
        probe = resolve_aggregate_spec(ent.type, int(ent.bucket_ms), fields, empty, np.zeros(0, np.int64),
                                       count_values=[])
        values: list[str] = []
        if probe.count_by is not None:
            encoder = next((e for e in tokenizer.encoders if e.name == probe.count_by), None)
            vocab = list(getattr(encoder, "vocab", []))
            values = [v for v in vocab if count_column_name(v) in known]
        spec = resolve_aggregate_spec(ent.type, int(ent.bucket_ms), fields, empty, np.zeros(0, np.int64),
                                      count_by=probe.count_by, count_values=values)
        missing = sorted(set(known) - set(spec.columns()))
        if missing:
            raise ValueError(f"entity {ent.type}: the tokenizer knows aggregate fields {missing} that the "
                             "schema cannot reproduce; was the model trained on this data config?")
        out[ent.type] = spec
    return out


def load_heads(run: Path, wanted: Mapping[str, Mapping[str, Any]]) -> list[ServedHead]:
    """Heads of a fine-tune run, one per task in `wanted` ({task: {"head": name|None, "output": key}})."""
    from foundation.heads import load_head

    served = []
    for task, choice in wanted.items():
        task_dir = run / "heads" / task
        names = sorted(p.name for p in task_dir.iterdir() if (p / "head.json").exists()) if task_dir.is_dir() else []
        name = (choice or {}).get("head") or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise FileNotFoundError(f"{task_dir}: choose one head of {names or 'none found'} "
                                    f"(heads.{task}.head=<name>)")
        meta = json.loads((task_dir / name / "head.json").read_text())
        entities = list(meta.get("entity_types") or meta.get("entities") or [])
        served.append(ServedHead(task, str((choice or {}).get("output") or f"{task}_probability"), entities,
                                 load_head(task_dir / name), meta.get("threshold"), f"{task}/{name}"))
    return served


class StateWarmer:
    """Recomputes the states of just-ingested entities in a background thread, so the next score of the
    entity hits the cache instead of paying a causal pass on the request path.

    Refs queued while a pass runs are coalesced (each entity once, at its newest version). Failures are
    logged and dropped: the request path computes the state itself on a miss.

    Args:
        scorer: the Scorer whose cache is filled.
        store: the StateStore read.
        max_pending: queued entities beyond this are dropped (the request path covers them).
    """

    def __init__(self, scorer: Scorer, store: StateStore, max_pending: int = 10_000):
        self.scorer, self.store, self.max_pending = scorer, store, max_pending
        self._pending: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._cond = threading.Condition()
        self._stopped = self._busy = False
        self._thread = threading.Thread(target=self._run, name="state-warmer", daemon=True)
        self._thread.start()

    def submit(self, refs: Sequence[tuple[str, str]]) -> None:
        with self._cond:
            for ref in refs:
                if len(self._pending) < self.max_pending:
                    self._pending[ref] = None
            self._cond.notify()

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (tests, graceful shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
                refs = list(self._pending)[:64]
                for ref in refs:
                    del self._pending[ref]
                self._busy = True
            try:
                self.scorer.entity_states(refs, self.store)
            except Exception as err:  # noqa: BLE001 - a warm-up failure must never stop the service
                logger.warning("state warm-up of %d entities failed: %s", len(refs), err)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
