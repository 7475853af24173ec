"""Online scoring from the live state, with exactly what training wrote.

Loads the tokenizer (`EventTokenizer.from_pretrained`) and the model (`FoundationModel.from_pretrained`) from
`<checkpoint>/hf`, the data schema from the run's `config.yaml`, and the task heads of fine-tune runs
(`foundation.heads.load_head(<run>/heads/<task>/<head>)`). Features are the point-in-time task features, built by the same
functions as the batch path (`foundation.pointintime.task_features`):
- `probe`, `mlp`: `[h_1(t), ..., h_k(t), event_vector(e), has_history_1..k]` of the pretrained model;
- `full`: the same layout computed with the head's own fine-tuned encoder (a second StateEngine);
- `gbdt`: the same plus the attempt's raw fields (`foundation.pointintime.raw_field_features`, with the
  vocabularies the head was trained with).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foundation.data.aggregates import AggregateSpec
from foundation.data.schema import DataSchema
from foundation.pointintime import (
    PretrainedRun,
    RawFieldLayout,
    aggregate_specs,
    canonical_rows,
    same_tokenizer,
    task_features,
)
from foundation.serving.engine import EntityState, Ref, StateEngine
from foundation.serving.profile import ScoreProfile
from foundation.serving.schemas import Attempt, EventParser, RequestError
from foundation.serving.state import EventRecord, StateStore

logger = logging.getLogger(__name__)
PRETRAINED = "pretrained"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class ServedHead:
    """A fine-tuned task head and what it reads.

    Args:
        task: task name (fraud, authorization).
        output: response key (fraud_probability, approval_probability).
        entities: entity types whose states form the features, in order.
        model: object with predict_proba(features (N, D)) -> (N,).
        threshold: decision threshold chosen on validation (reported, not applied).
        name: "<task>/<head>".
        engine: key of the StateEngine computing its states (PRETRAINED, or the head's own for `full`).
        raw: the raw-field block appended to the features (gbdt heads), or None.
        surprise: names of the event surprise columns the head was trained with (empty: none).
    """

    task: str
    output: str
    entities: list[str]
    model: Any
    threshold: float | None
    name: str
    engine: str = PRETRAINED
    raw: RawFieldLayout | None = field(default=None)
    surprise: tuple[str, ...] = ()


class Scorer:
    """Entity states, embeddings and task probabilities from a StateStore.

    Args:
        model: the pretrained FoundationModel.
        tokenizer: the EventTokenizer saved with it.
        schema: the data schema it was trained on.
        heads: the served task heads (may be empty: embeddings only).
        aggregate_specs: entity type -> AggregateSpec for `representation: aggregate` entities.
        model_version: reported with every score.
        cache_size: entities whose state is cached, per engine.
        engines: extra StateEngines by key (the fine-tuned encoders of `full` heads).
        surprise: EventSurprise of the pretrained model's next-event heads, or None.
        incremental: advance states by one recurrent step per event (see StateEngine).
        live_bytes: bytes of live-state carries kept per engine (None: only cache_size bounds them).
    """

    def __init__(self, model: Any, tokenizer: Any, schema: DataSchema, heads: Sequence[ServedHead] = (),
                 aggregate_specs: Mapping[str, AggregateSpec] | None = None, model_version: str = "unversioned",
                 cache_size: int = 100_000, engines: Mapping[str, StateEngine] | None = None,
                 surprise: Any = None, incremental: bool = True, live_bytes: int | None = None):
        self.engine = StateEngine(model, tokenizer, schema, aggregate_specs, cache_size, surprise, incremental,
                                  live_bytes)
        self.engines = {PRETRAINED: self.engine, **dict(engines or {})}
        self.schema = schema
        self.heads = list(heads)
        self.model_version = model_version
        self.event_entity = self.engine.event_entity
        self.profile = ScoreProfile()  # seconds per stage of score_many (/metrics, the load test's profile table)
        for head in self.heads:
            self._check(head)

    def _check(self, head: ServedHead) -> None:
        missing = [e for e in head.entities if e not in self.schema.entities]
        if missing:
            raise ValueError(f"head {head.name} reads entity types {missing} that the data schema does not declare")
        if head.engine not in self.engines:
            raise ValueError(f"head {head.name}: no state engine {head.engine!r}")
        engine = self.engines[head.engine]
        if head.surprise:
            found_names = tuple(engine.surprise.names) if engine.surprise is not None else ()
            if found_names != tuple(head.surprise):
                raise ValueError(f"head {head.name} was trained with surprise columns {list(head.surprise)}; the "
                                 f"served model gives {list(found_names) or 'none (no next_event_heads.safetensors)'}")
        hidden = engine.hidden_size
        expected = (len(head.entities) * hidden + hidden + len(head.entities) + len(head.surprise)
                    + len(head.raw.names if head.raw else []))
        found = getattr(head.model, "n_features", None)
        if found is not None and int(found) != expected:
            raise ValueError(
                f"head {head.name} expects {found} features; serving builds {expected} = "
                f"[h_{', h_'.join(head.entities)}, event_vector, has_history flags"
                f"{', surprise' if head.surprise else ''}{', raw fields' if head.raw else ''}] (foundation.pointintime.task_features, H={hidden})")

    # ------------------------------------------------------------------ the pretrained engine's view

    @property
    def model(self) -> Any:
        return self.engine.model

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def field_specs(self) -> list[dict[str, Any]]:
        return self.engine.field_specs

    @property
    def aggregate_specs(self) -> dict[str, AggregateSpec]:
        return self.engine.aggregate_specs

    @property
    def max_events(self) -> int:
        """Events the state must keep per entity: a full window plus the predecessor of its first event."""
        return max(engine.max_len for engine in self.engines.values()) + 1

    @property
    def cache_hits(self) -> int:
        return sum(engine.cache_hits for engine in self.engines.values())

    @property
    def cache_misses(self) -> int:
        return sum(engine.cache_misses for engine in self.engines.values())

    def entity_states(self, refs: Sequence[Ref], store: StateStore, time: int | None = None,
                      event_id: str | None = None, on_cache: Any = None) -> list[EntityState]:
        """The pretrained model's states (see StateEngine.entity_states)."""
        return self.engine.entity_states(refs, store, time, event_id, on_cache)

    def event_vector(self, record: EventRecord, previous_time: int | None) -> np.ndarray:
        """The pretrained model's event vector of an attempt (see StateEngine.event_vector)."""
        return self.engine.event_vector(record, previous_time)

    def invalidate(self, refs: Sequence[Ref]) -> None:
        for engine in self.engines.values():
            engine.invalidate(refs)

    # ------------------------------------------------------------------ requests

    def score(self, attempt: Attempt, store: StateStore, on_cache: Any = None) -> dict[str, Any]:
        """Probabilities of every served head for one charge attempt (states as of just before it)."""
        result = self.score_many([attempt], store, on_cache)[0]
        if isinstance(result, RequestError):
            raise result
        return result

    def score_many(self, attempts: Sequence[Attempt], store: StateStore, on_cache: Any = None
                   ) -> list[dict[str, Any] | RequestError]:
        """`score` of several attempts with one event-encoder pass per engine and one call per head (the
        micro-batch of concurrent requests). An attempt whose states cannot be computed (409) gets its
        RequestError in its place; the others are scored.

        Returns:
            one response dict (or RequestError) per attempt, in order.
        """
        if not self.heads:
            raise RequestError(503, "no task heads loaded (set finetune_run or heads.<task>.run): only "
                                    "embeddings are served")
        self.profile.count(len(attempts))
        with self.profile.stage("features"):
            states, results = self._states(attempts, store, on_cache)
        ok = [i for i, r in enumerate(results) if r is None]
        if ok:
            for i, probabilities in zip(ok, self._probabilities([attempts[i] for i in ok], [states[i] for i in ok])):
                results[i] = self._response(attempts[i], probabilities, states[i][self.heads[0].engine])
        return results  # type: ignore[return-value]

    def _states(self, attempts: Sequence[Attempt], store: StateStore, on_cache: Any
                ) -> tuple[list[dict[str, dict[str, EntityState]]], list[RequestError | None]]:
        """Each attempt's entity states per engine (engine key -> entity type -> state), or its RequestError."""
        results: list[RequestError | None] = [None] * len(attempts)
        states: list[dict[str, dict[str, EntityState]]] = [{} for _ in attempts]
        for key in dict.fromkeys(h.engine for h in self.heads):
            types = list(dict.fromkeys([self.event_entity] + [e for h in self.heads if h.engine == key
                                                               for e in h.entities]))
            refs = [[(t, a.record.payload[f"{t}_id"]) for t in types] for a in attempts]
            union = list(dict.fromkeys(ref for mine in refs for ref in mine))
            version = dict(zip(union, store.versions(union)))  # one read for the whole micro-batch
            for i, attempt in enumerate(attempts):
                record = attempt.record
                if results[i] is not None:
                    continue
                try:
                    found = self.engines[key].entity_states(refs[i], store, record.event_time,
                                                            record.event_id if attempt.has_event_id else None,
                                                            on_cache, [version[ref] for ref in refs[i]])
                except RequestError as err:
                    results[i] = err
                    continue
                states[i][key] = dict(zip(types, found))
        return states, results

    def _probabilities(self, attempts: Sequence[Attempt], states: Sequence[dict[str, dict[str, EntityState]]]
                       ) -> list[dict[str, float]]:
        """Every head's probability for each attempt: features stacked (N, D), one predict_proba per head."""
        records = [a.record for a in attempts]
        features: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for key in dict.fromkeys(h.engine for h in self.heads):
            surprise = any(h.surprise for h in self.heads if h.engine == key)
            features[key] = self.engines[key].event_features_many(
                records, [s[key][self.event_entity] for s in states], surprise, self.profile)
        raw: list[tuple[Any, np.ndarray]] = []  # (layout, its (N, R) block): heads trained alike share one
        table = None
        out: list[dict[str, float]] = [{} for _ in attempts]
        for head in self.heads:
            vectors, surprise = features[head.engine]
            with self.profile.stage("features"):
                x = np.stack([task_features([s[head.engine][e].hidden for e in head.entities],
                                            [s[head.engine][e].has_history for e in head.entities], vectors[r],
                                            surprise[r] if head.surprise else None)
                              for r, s in enumerate(states)])  # (N, D)
                if head.raw is not None:
                    block = next((found for layout, found in raw if layout == head.raw), None)
                    if block is None:
                        block = head.raw.rows([r.payload for r in records], self.engine.canonical)  # (N, R)
                        if block is None:  # a field type the row path does not take: the table path
                            if table is None:
                                table = canonical_rows([r.payload for r in records], self.engine.canonical)
                            block = head.raw.features(table, self.schema)
                        raw.append((head.raw, block))
                    x = np.concatenate([x, block], axis=1)
            with self.profile.stage("head"):
                probabilities = np.asarray(head.model.predict_proba(x)).reshape(-1)
            for r in range(len(attempts)):
                out[r][head.output] = float(probabilities[r])
        return out

    def _response(self, attempt: Attempt, probabilities: dict[str, float],
                  states: dict[str, EntityState]) -> dict[str, Any]:
        event_id = attempt.record.event_id if attempt.has_event_id else None
        out: dict[str, Any] = {"event_id": event_id, "model_version": self.model_version}
        out.update({head.output: probabilities[head.output] for head in self.heads})
        out["thresholds"] = {h.output: h.threshold for h in self.heads}
        out["has_history"] = {t: s.has_history for t, s in states.items()}
        return out

    def embedding(self, entity_type: str, entity_id: str, store: StateStore, as_of: int | None = None,
                  on_cache: Any = None) -> dict[str, Any]:
        """The entity's embedding after its last event (as_of None) or its last event strictly before as_of
        (an aggregate entity: its last bucket closed at or before as_of)."""
        state = self.engine.entity_states([(entity_type, entity_id)], store, as_of, None, on_cache)[0]
        return {"entity_type": entity_type, "entity_id": entity_id, "model_version": self.model_version,
                "has_history": state.has_history, "index": state.index,
                "last_event_time": None if state.last_time is None else EventParser.format_time(state.last_time),
                "as_of": None if as_of is None else EventParser.format_time(as_of),
                "embedding": state.hidden.tolist()}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, finetune_run: str | Path | None = None,
                        heads: Mapping[str, Mapping[str, Any]] | None = None, fallback_data: Any = None,
                        cache_size: int = 100_000, torch_threads: int | None = 1,
                        incremental: bool = True, live_bytes: int | None = None) -> Scorer:
        """Load what training wrote.

        Args:
            checkpoint: pretraining run folder (with hf/ and config.yaml) or its hf/ folder.
            finetune_run: fine-tune run folder with heads/<task>/<head>/ (None: only tasks naming a run).
            heads: task -> {"head": name or None (the only one), "output": response key, "run": fine-tune
                run of this task or None (finetune_run)}; tasks without any run are not served.
            fallback_data: data config used when the run has no config.yaml (a warning is logged).
            cache_size: entities whose state is cached, per engine.
            torch_threads: intra-op threads (None leaves torch's default).
            incremental: advance states by one recurrent step per event (see StateEngine).
            live_bytes: bytes of live-state carries kept per engine (None: only cache_size bounds them).
        """
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        pretrained = PretrainedRun.load(checkpoint)
        hf, run, model, tokenizer = pretrained.hf_dir, pretrained.run_dir, pretrained.model, pretrained.tokenizer
        surprise = pretrained.surprise
        schema = pretrained.schema(fallback_data)
        specs = aggregate_specs(schema, tokenizer)
        served, engines, runs = [], {}, []
        for task, choice in (heads or {}).items():
            choice = dict(choice or {})
            task_run = choice.get("run") or finetune_run
            if not task_run:
                continue
            if not choice.get("run") and not (Path(task_run) / "heads" / task).is_dir():
                logger.warning("%s has no heads for task %s: not served", task_run, task)
                continue
            head, encoder = load_task_head(Path(task_run), task, choice, schema)
            if encoder is not None:
                _check_same_tokenizer(hf, Path(task_run) / "heads" / head.name / "encoder")
                engines[head.name] = StateEngine(encoder, tokenizer, schema, specs, cache_size,
                                                 incremental=incremental, live_bytes=live_bytes)
            served.append(head)
            runs.append(Path(task_run).name)
        if finetune_run and not served:
            raise FileNotFoundError(f"{finetune_run}: no heads/<task>/<head>/ for tasks {sorted(heads or {})}")
        version = f"{run.name}@{pretrained.digest()}" + "".join(f"+{r}" for r in dict.fromkeys(runs))
        return cls(model, tokenizer, schema, served, specs, version, cache_size, engines, surprise, incremental,
                   live_bytes)


def live_options(scorer_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`incremental` and `live_bytes` of `Scorer.from_pretrained` from the `scorer` section of conf/serve.yaml."""
    megabytes = scorer_cfg.get("live_state_mb")
    return {"incremental": bool(scorer_cfg.get("incremental", True)),
            "live_bytes": None if megabytes is None else int(float(megabytes) * 2**20)}


def _check_same_tokenizer(hf: Path, encoder_dir: Path) -> None:
    """A `full` head's encoder must read events encoded as the pretrained model's (one live encoding)."""
    if (encoder_dir / "tokenizer_config.json").exists() and not same_tokenizer(hf, encoder_dir):
        raise ValueError(f"{encoder_dir}: the fine-tuned encoder was saved with another tokenizer than {hf}")


def load_task_head(run: Path, task: str, choice: Mapping[str, Any], schema: DataSchema) -> tuple[ServedHead, Any]:
    """One task's head from a fine-tune run, and the fine-tuned encoder it needs (`full` heads) or None.

    The head declares what it reads (`head.inputs`, foundation.heads.HeadInputs): the service builds exactly
    those columns, or refuses a head whose columns it cannot build from the live state.

    Args:
        run: the fine-tune run folder (heads/<task>/<head>/).
        task: task name.
        choice: {"head": name or None (the only head of the task), "output": response key}.
        schema: the data schema (checks the raw-field block of gbdt heads).
    """
    from foundation.heads import HeadInputs, load_head

    task_dir = run / "heads" / task
    names = sorted(p.name for p in task_dir.iterdir() if (p / "head.json").exists()) if task_dir.is_dir() else []
    name = choice.get("head") or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        raise FileNotFoundError(f"{task_dir}: choose one head of {names or 'none found'} (heads.{task}.head=<name>)")
    model = load_head(task_dir / name)
    inputs = model.inputs or HeadInputs(tuple(model.metadata.get("entity_types") or ()))
    if not inputs.servable:
        raise ValueError(f"{task_dir / name}: feature layout {inputs.kind!r} cannot be served online (needs entity "
                         "histories beyond the live state, e.g. velocity windows); serve a probe/mlp/full/gbdt head")
    raw = None
    if inputs.raw is not None:
        raw = RawFieldLayout(_velocity_block(run, task), dict(inputs.raw.get("categories") or {}),
                             list(inputs.raw.get("names") or []))
    entities = list(model.metadata.get("entity_types") or inputs.entities)
    encoder = getattr(model, "encoder", None)  # a head fine-tuned with its encoder reads that encoder's states
    head = ServedHead(task, str(choice.get("output") or f"{task}_probability"), entities, model, model.threshold,
                      f"{task}/{name}", PRETRAINED if encoder is None else f"{task}/{name}", raw, inputs.surprise)
    return head, encoder


def _velocity_block(run: Path, task: str) -> dict[str, Any]:
    """The task's `velocity` block as the fine-tune run saw it (its Hydra config), else conf/task/<task>.yaml."""
    from omegaconf import OmegaConf

    saved = run / "hydra" / ".hydra" / "config.yaml"
    if saved.exists():
        cfg = OmegaConf.load(saved)
        if cfg.get("task") is not None and cfg.task.get("name") == task:
            return OmegaConf.to_container(cfg.task.get("velocity") or {}, resolve=True)
    path = CONF_DIR / "task" / f"{task}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no velocity settings for task {task!r}: neither {saved} nor {path}")
    return OmegaConf.to_container(OmegaConf.load(path).get("velocity") or {}, resolve=True)
