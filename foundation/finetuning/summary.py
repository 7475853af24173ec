"""What a fine-tune run reports besides the metrics: customer embeddings by trait, the results table."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.evaluation.report import TraitEmbeddings
from foundation.evaluation.splits import schema_period
from foundation.pointintime import PointInTimeStates


def trait_embeddings(fr: Any, max_customers: int) -> TraitEmbeddings | None:
    """Customer states at the end of the pretraining period, with whether the customer had a fraud label then."""
    if "customer" not in fr.schema.entities or "is_fraud" not in fr.events.column_names:
        return None
    pretrain = schema_period(fr.schema, "pretrain")
    end = pa.scalar(pretrain.end.astype(dt.datetime), pa.timestamp("ms"))
    start = pa.scalar(pretrain.start.astype(dt.datetime), pa.timestamp("ms"))
    times = fr.events.column("event_time")
    window = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    seen = fr.events.filter(pc.and_(window, pc.is_valid(fr.events.column("customer_id"))))
    ids = pc.unique(seen.column("customer_id")).sort()
    if len(ids) < 2:
        return None
    ids = ids.take(pa.array(np.sort(np.random.default_rng(0).permutation(len(ids))[:max_customers])))
    fraud = seen.filter(pc.equal(pc.fill_null(seen.column("is_fraud"), 0.0), 1.0)).column("customer_id")
    traits = np.where(pc.is_in(ids, value_set=pc.unique(fraud)).to_numpy(zero_copy_only=False),
                      "fraud in pretraining period", "no fraud")
    t = np.full(len(ids), int(pretrain.end.astype("datetime64[ms]").astype(np.int64)))
    states = PointInTimeStates(fr.store, fr.encoder).as_of("customer", ids, t)
    return TraitEmbeddings(states.hidden, traits, "fraud label in pretraining period", "customer")


def results_table(metrics_json: Path) -> str:
    """A compact text table of PR-AUC and ROC-AUC with 95% intervals, per task, model and label fraction."""
    document = json.loads(Path(metrics_json).read_text())
    rows, comparisons = document["results"], document.get("comparisons", [])
    width = max([14, *(len(r["model"]) for r in rows)])
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        first = mine[0]
        lines += [f"{task}: {first['n_test']} test examples, {first['n_test_positive']} positive "
                  f"(base rate {first['n_test_positive'] / first['n_test']:.4f})",
                  f"  {'model':<{width}} {'labels':>6} {'n_train':>8}  {'PR-AUC [95% CI]':<26} {'ROC-AUC [95% CI]':<26}"]
        for r in sorted(mine, key=lambda r: (r["model"], -r["label_fraction"])):
            pr, roc = r["pr_auc"], r["roc_auc"]
            lines.append(f"  {r['model']:<{width}} {r['label_fraction']:>6.0%} {r['n_train'] or 0:>8}  "
                         f"{pr['value']:.4f} [{pr['ci_low']:.4f}, {pr['ci_high']:.4f}]   "
                         f"{roc['value']:.4f} [{roc['ci_low']:.4f}, {roc['ci_high']:.4f}]")
        versus = [c for c in comparisons if c["task"] == task]
        if versus:
            lines.append("  paired PR-AUC difference vs baseline [95% CI]:")
        for c in versus:
            verdict = "beats it" if c["beats_baseline"] else "does not beat it"
            lines.append(f"    {c['model'] + '@' + format(c['label_fraction'], '.0%'):<{width + 6}} - "
                         f"{c['baseline'] + '@' + format(c['baseline_label_fraction'], '.0%'):<{width + 4}} "
                         f"{c['delta']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]  {verdict}")
    return "\n".join(lines)
