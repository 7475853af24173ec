"""Slice metrics on a hand-built fixture: slice labels, counts, and PR/ROC-AUC equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from foundation.evaluation.slices import (
    amount_quartiles,
    categorical_slice,
    history_buckets,
    plot_slice_pr_auc,
    slice_metrics,
    slices_from_scores,
)

LABELS = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0])
MCC = ["a", "a", "a", "a", "a", "a", "b", "b", "b", "b", "c", None]
GOOD = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.4, 0.7, 0.6, 0.2, 0.1, 0.5, 0.5])
BAD = np.array([0.1, 0.9, 0.8, 0.3, 0.2, 0.4, 0.2, 0.6, 0.7, 0.1, 0.5, 0.5])


def test_categorical_slice_keeps_top_k_then_other_and_missing():
    labels = categorical_slice(MCC, top_k=2)
    assert list(np.asarray(labels)) == ["a"] * 6 + ["b"] * 4 + ["other", "missing"]
    assert list(labels.categories) == ["a", "b", "other", "missing"]
    # Ties are broken by value, so the kept set never depends on row order.
    assert list(categorical_slice(pa.array(["y", "x", "x", "y", "z"]), top_k=1).categories) == ["x", "other"]
    with pytest.raises(ValueError, match="top_k"):
        categorical_slice(MCC, top_k=0)


def test_amount_quartiles_use_the_test_amounts():
    labels = amount_quartiles(np.arange(1.0, 9.0))  # quartile edges 2.75, 4.5, 6.25
    assert list(np.asarray(labels)) == ["<=2.75"] * 2 + ["2.75-4.5"] * 2 + ["4.5-6.25"] * 2 + [">6.25"] * 2
    ties = amount_quartiles([5.0, 5.0, 5.0, 5.0, 5.0, 10.0, np.nan])  # every edge is 5: two buckets
    assert list(np.asarray(ties)) == ["<=5"] * 5 + [">5", "missing"]


def test_history_buckets():
    counts = [0, 1, 4, 5, 19, 20, 99, 100, 500, np.nan]
    assert list(np.asarray(history_buckets(counts))) == [
        "0", "1-4", "1-4", "5-19", "5-19", "20-99", "20-99", "100+", "100+", "missing"]
    assert list(history_buckets([100, 0]).categories) == ["0", "100+"]
    with pytest.raises(ValueError, match="history_length"):
        history_buckets([-1])


def test_slice_metrics_match_scikit_learn():
    df = slice_metrics(LABELS, {"good": GOOD, "bad": BAD}, {"mcc": categorical_slice(MCC, top_k=2)})
    assert list(df.columns) == ["slice", "value", "model", "n", "positives", "pr_auc", "roc_auc"]
    assert list(df.drop_duplicates(["slice", "value"]).value) == ["all", "a", "b", "other", "missing"]
    row = df.set_index(["slice", "value", "model"])
    for value, rows in (("all", slice(None)), ("a", slice(0, 6)), ("b", slice(6, 10))):
        for model, scores in (("good", GOOD), ("bad", BAD)):
            got = row.loc[("all" if value == "all" else "mcc", value, model)]
            assert got.n == len(LABELS[rows]) and got.positives == LABELS[rows].sum()
            assert got.pr_auc == pytest.approx(average_precision_score(LABELS[rows], scores[rows]))
            assert got.roc_auc == pytest.approx(roc_auc_score(LABELS[rows], scores[rows]))
    # Known answers: `good` ranks both positives of `a` first; `b` has one positive ranked 1st by good.
    assert row.loc[("mcc", "a", "good")].pr_auc == 1.0 and row.loc[("mcc", "b", "good")].roc_auc == 1.0
    assert row.loc[("mcc", "b", "bad")].pr_auc == pytest.approx(1 / 3)
    # One class only: counted, but no metric.
    other = row.loc[("mcc", "other", "good")]
    assert (other.n, other.positives) == (1, 0) and np.isnan(other.pr_auc) and np.isnan(other.roc_auc)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="'good' has"):
        slice_metrics(LABELS, {"good": GOOD[:5]}, {})
    with pytest.raises(ValueError, match="slicing 'mcc' has 3 values"):
        slice_metrics(LABELS, {"good": GOOD}, {"mcc": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="lacks columns"):
        slices_from_scores(pd.DataFrame({"label": LABELS}), ["good"], ["mcc"])


def test_slices_from_a_scores_table_and_plot(tmp_path):
    table = pa.table({"label": pa.array(LABELS, pa.int8()), "score_good": GOOD, "score_bad": BAD,
                      "mcc": MCC, "amount": np.arange(1.0, 13.0), "history": [0, 3, 7, 50, 200, 0] * 2})
    df = slices_from_scores(table, ["good", "bad"], ["mcc"], amount="amount", history="history", top_k=2)
    assert list(dict.fromkeys(df.slice)) == ["all", "mcc", "amount_quartile", "history_length"]
    hist = df[(df.slice == "history_length") & (df.model == "good")]
    assert list(hist.value) == ["0", "1-4", "5-19", "20-99", "100+"] and list(hist.n) == [4, 2, 2, 2, 2]
    assert df[(df.slice == "amount_quartile") & (df.model == "bad")].n.tolist() == [3, 3, 3, 3]
    path = plot_slice_pr_auc(tmp_path / "plots" / "slices.png", df)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_slice_pr_auc(tmp_path / "empty.png", df.iloc[:0])
