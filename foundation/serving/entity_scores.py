"""Entity task scores from the live state: `GET /v1/entities/{entity_type}/{entity_id}/scores`.

An entity task head (`foundation.entitytasks`, saved under `<finetune run>/heads/<task>/<head>/` with head.json
`kind: entity`) reads the entity's embedding as of `?as_of=` (default: the service clock's now), the same (H + 2)
columns its fine-tune run built with `foundation.entitytasks.embedding.entity_embeddings`: the live state after
the entity's events at or before as_of, a has-history flag and the days since its last event (and, for a head
trained with `embedding.hazard`, the pretrained time head's survival columns, foundation.entitytasks.hazard).
conf/serve.yaml `entity_tasks` names the heads; the service answers every head of the entity's type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from foundation.entitytasks.embedding import elapsed_feature
from foundation.entitytasks.hazard import GapHazard
from foundation.serving.schemas import EventParser, RequestError, parse_as_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityTaskHead:
    """A served entity task head: task, head name, entity type, problem, class names, the fitted model, the
    lookback (ms before as_of) of the earlier states its embedding adds (head.json `lookback_ms`) and the horizons
    of its survival columns (head.json `hazard_ms`)."""

    task: str
    name: str
    entity_type: str
    problem: str
    classes: tuple[str, ...]
    model: Any
    lookback: tuple[int, ...] = ()
    hazard: tuple[int, ...] = ()

    def answer(self, features: np.ndarray) -> dict[str, Any]:
        """The head's response entry for one entity's (1, H + 2) features."""
        scores = self.model.predict_proba(features)
        out: dict[str, Any] = {"head": self.name, "problem": self.problem}
        if self.problem == "binary":
            out["probability"] = float(scores[0])
        elif self.problem == "regression":
            out["value"] = float(scores[0])
        else:
            out["probabilities"] = dict(zip(self.classes, (float(p) for p in scores[0])))
            out["class"] = self.classes[int(np.argmax(scores[0]))]
        return out


def load_entity_heads(tasks: Mapping[str, Mapping[str, Any] | None] | None, finetune_run: str | Path | None
                      ) -> list[EntityTaskHead]:
    """The heads conf/serve.yaml `entity_tasks` names: task -> {run (null: finetune_run), head (null: the task's
    only head)}. A task without a run, or whose run holds no heads for it, is not served (logged)."""
    from foundation.heads import load_head

    heads = []
    for task, choice in (tasks or {}).items():
        choice = dict(choice or {})
        run = choice.get("run") or finetune_run
        task_dir = Path(run) / "heads" / task if run else None
        if task_dir is None or not task_dir.is_dir():
            logger.info("entity task %s: no heads in %s, not served", task, run)
            continue
        names = sorted(p.name for p in task_dir.iterdir() if (p / "head.json").exists())
        name = choice.get("head") or (names[0] if len(names) == 1 else None)
        if name not in names:
            raise FileNotFoundError(f"{task_dir}: choose one head of {names} (entity_tasks.{task}.head=<name>)")
        model = load_head(task_dir / name)
        meta = model.metadata
        if meta.get("kind") != "entity":
            raise ValueError(f"{task_dir / name} is not an entity task head (head.json kind {meta.get('kind')!r})")
        if model.head_type == "entity_full":
            raise ValueError(f"{task_dir / name} is a full fine-tune (its own encoder), scored in batch only; serve "
                             f"one of the heads on the pretrained embedding: entity_tasks.{task}.head="
                             f"{[n for n in names if n != name]}")
        heads.append(EntityTaskHead(task, name, str(meta["entity_type"]), str(meta["problem"]),
                                    tuple(meta.get("classes") or ()), model,
                                    tuple(int(ms) for ms in meta.get("lookback_ms") or ()),
                                    tuple(int(ms) for ms in meta.get("hazard_ms") or ())))
    return heads


def entity_scores(scorer: Any, store: Any, heads: list[EntityTaskHead], entity_type: str, entity_id: str,
                  as_of: int | None = None, on_cache: Any = None) -> dict[str, Any]:
    """Every entity task score of one entity from its live state.

    Args:
        as_of: epoch ms; the state after the entity's events at or before it (the batch path's as-of rule), or
            None for now (the state after its last event, the days since it counted to the service clock).
    """
    mine = [h for h in heads if h.entity_type == entity_type]
    if not mine:
        raise RequestError(404, f"no entity task head serves entity type {entity_type!r} "
                                f"(served: {sorted({h.entity_type for h in heads}) or 'none'})")
    now = int(time.time() * 1000) if as_of is None else as_of
    cutoff = None if as_of is None else as_of + 1  # entity_states reads events strictly before its time
    engine = scorer.engine
    state = engine.entity_states([(entity_type, entity_id)], store, cutoff, None, on_cache)[0]
    states = {0: state}
    for back in sorted({b for head in mine for b in head.lookback}):  # earlier states: the batch path's rule
        states[back] = engine.entity_states([(entity_type, entity_id)], store, now - back + 1, None, on_cache)[0]
    blocks: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}  # (lookback, hazard horizons) -> columns, once

    def block(back: int, horizons: tuple[int, ...]) -> np.ndarray:
        if (back, horizons) not in blocks:
            hazard = GapHazard.from_run(engine.surprise, engine.tokenizer, horizons) if horizons else None
            blocks[back, horizons] = _embedding_columns(states[back], now - back, hazard)
        return blocks[back, horizons]

    scores = {}
    for head in mine:
        features = np.concatenate([block(b, head.hazard) for b in (0, *head.lookback)])[None, :]
        expected = getattr(head.model, "n_features", features.shape[1])
        if int(expected) != features.shape[1]:
            raise RequestError(500, f"entity head {head.task}/{head.name} expects {expected} features, the live "
                                    f"state gives {features.shape[1]} (another checkpoint?)")
        scores[head.task] = head.answer(features)
    return {"entity_type": entity_type, "entity_id": entity_id, "model_version": scorer.model_version,
            "has_history": bool(state.has_history),
            "last_event_time": None if state.last_time is None else EventParser.format_time(state.last_time),
            "as_of": None if as_of is None else EventParser.format_time(as_of),
            "scores": scores}


def _embedding_columns(state: Any, as_of: int, hazard: GapHazard | None = None) -> np.ndarray:
    """(H + 2 [+ hazard columns],) one entity's embedding columns as of `as_of` (foundation.entitytasks.embedding)."""
    last = state.last_time if state.has_history and state.last_time is not None else -1
    hidden = np.asarray(state.hidden, np.float32)
    columns = [hidden, [np.float32(state.has_history)], elapsed_feature(np.array([last]), np.array([as_of]))]
    if hazard is not None:
        columns.append(hazard(hidden[None, :], np.array([as_of - last]), np.array([state.has_history]))[0])
    return np.concatenate(columns).astype(np.float32)


def add_entity_scores_route(app: FastAPI, svc: Any, guard: list, model_slots: Any) -> None:
    """`GET /v1/entities/{entity_type}/{entity_id}/scores`: the heads are `app.state.entity_heads` (set by
    `build_app` from conf/serve.yaml `entity_tasks`; none: 404)."""

    @app.get("/v1/entities/{entity_type}/{entity_id:path}/scores", dependencies=guard)
    async def get_entity_scores(request: Request, entity_type: str, entity_id: str,
                                as_of: str | None = None) -> JSONResponse:
        svc.parser.check_entity_type(entity_type)
        cutoff = parse_as_of(as_of)
        active = svc.need_scorer()
        heads = getattr(request.app.state, "entity_heads", None) or []

        def score() -> dict[str, Any]:
            return entity_scores(active, svc.store, heads, entity_type, entity_id, cutoff, svc.count_cache)

        return JSONResponse(await to_thread.run_sync(score, limiter=model_slots))

