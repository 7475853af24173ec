"""Online serving: live per-entity state, scoring from it with what training wrote, the HTTP service.

A leaf of the package: it imports the point-in-time core (`foundation.pointintime`: windows, batches, the
encoder pass, task features, `PretrainedRun`) and the heads, and nothing in foundation/ imports it.

- `state/`: the durable, idempotent per-entity event windows (SQLite embedded; Redis for several replicas).
- `schemas`: raw JSON events -> canonical EventRecords, validated by the batch validator (clear 4xx).
- `engine`: point-in-time states of one encoder over the live state, cached; the background warmer.
- `scorer`: loads the run, its tokenizer, model and heads; scores charge attempts; serves embeddings.
- `app`: the FastAPI service (`scripts/serve.py`); `metrics`: its Prometheus metrics.
- `replay`, `loadtest`: loopback-only clients (`scripts/replay.py`, `scripts/loadtest.py`).
"""
