"""The model card (`README.md`) of an exported model folder: what it was trained on, how, how well, and
what it is for, so a folder handed to another team explains itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

INTENDED_USE = """\
Point-in-time representations of payment entities (cards/customers, merchants, issuers) from their event
histories: entity embeddings and per-event states for downstream heads (fraud, authorization, disputes),
and next-event surprise features when `next_event_heads.safetensors` is present. The state at an event uses
only events before it. Not a decision system by itself: fine-tune a head and evaluate it out of time on
your own data before use. Embeddings of data unlike the training data (other markets, other schemas) are
not validated."""


def _table(rows: Mapping[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)


def write_model_card(directory: str | Path, *, run_name: str, data: Mapping[str, Any],
                     periods: Mapping[str, Any], objectives: Mapping[str, float],
                     architecture: Mapping[str, Any], metrics: Mapping[str, float]) -> Path:
    """Write `<directory>/README.md`.

    Args:
        directory: the exported model folder (`<run_dir>/hf`).
        run_name: the pretraining run.
        data: dataset facts (name, source, entity types, ...).
        periods: split name -> {start, end}; pretraining saw only the `pretrain` period.
        objectives: objective name -> loss weight.
        architecture: FoundationConfig fields worth reading (encoder, sizes).
        metrics: final logged metrics (train/val losses).
    Returns:
        The card's path.
    """
    period_rows = {name: f"{p.get('start')} to {p.get('end')} (end excluded)" for name, p in periods.items()
                   if isinstance(p, Mapping)}
    metric_rows = {name: f"{value:.4f}" for name, value in sorted(metrics.items())} or {"(none logged)": ""}
    card = f"""---
library_name: transformers
tags: [payments, foundation-model, event-sequences, payment_foundation]
---

# Payment-entity foundation model: {run_name}

Load with `FoundationModel.from_pretrained(<this folder>)` after `import foundation.model`, or with
`AutoModel.from_pretrained(<this folder>, trust_remote_code=True)`; the tokenizer files here encode raw events
(`EventTokenizer.from_pretrained(<this folder>)`).

## Data
{_table(data)}

## Periods
Pretraining used the `pretrain` period only; the tokenizer was fitted on it too. Test metrics of downstream
heads come from the later `test` period.

{_table(period_rows)}

## Objectives
{_table({name: f"weight {weight}" for name, weight in objectives.items()})}

## Architecture
{_table(architecture)}

## Metrics (end of pretraining)
{_table(metric_rows)}

## Intended use
{INTENDED_USE}
"""
    path = Path(directory) / "README.md"
    path.write_text(card)
    return path
