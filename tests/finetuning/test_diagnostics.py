"""Per-kind evaluation of a positives-only annotation column (which planted pattern made a fraud)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sklearn.metrics import average_precision_score

from foundation.finetuning.diagnostics import _annotates_positives, positive_kinds


def test_each_kind_is_scored_against_all_negatives():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    kind = pa.array([None, None, None, None, "burst", "burst", "quiet", "quiet"])
    model = np.array([0.1, 0.2, 0.3, 0.6, 0.9, 0.8, 0.5, 0.25])  # catches bursts, half-misses quiet fraud
    table = pa.table({"label": labels, "score_m": model, "pattern": kind})
    assert _annotates_positives(kind, labels)
    assert not _annotates_positives(pa.array(["a"] * 8), labels)  # set on negatives too: an ordinary slice
    found = positive_kinds(table, ["m"], "pattern").set_index("kind")
    assert found.loc["burst", "positives"] == 2 and found.loc["burst", "pr_auc"] == 1.0
    quiet = np.r_[labels[:4], 1, 1]
    assert np.isclose(found.loc["quiet", "pr_auc"], average_precision_score(quiet, np.r_[model[:4], 0.5, 0.25]))
    assert found.loc["quiet", "recall_at_fpr"] == 0.0  # at 1% FPR (no false positive allowed) neither is flagged
