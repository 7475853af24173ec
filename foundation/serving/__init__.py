"""Online serving: live per-entity state, scoring from it with what training wrote, the HTTP service.

- `state/`: the durable, idempotent per-entity event windows (SQLite embedded; Redis for several replicas).
- `schemas`: raw JSON events -> canonical EventRecords, validated by the batch validator (clear 4xx).
- `features`: section 8 as functions (windows, sequence tables, event vectors, task features), shared
  with the batch path (foundation.embeddings, foundation.heads).
- `engine`: point-in-time states of one encoder over the live state, cached; the background warmer.
- `scorer`: loads tokenizer, model and heads; scores charge attempts; serves embeddings.
- `app`: the FastAPI service (`scripts/serve.py`); `metrics`: its Prometheus metrics.
- `replay`, `loadtest`: loopback-only clients (`scripts/replay.py`, `python -m foundation.serving.loadtest`).

Nothing is imported here: the batch path imports `foundation.serving.features` without the web stack.
"""
