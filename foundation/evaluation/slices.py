"""Metrics per slice of the test set: which model wins where (a merchant category, a fraud pattern, large
amounts, customers with little history).

A slicing is a column name plus one string label per test example. Three builders make them:
`categorical_slice` (the top-K values of a column, the rest as "other", nulls as "missing"),
`amount_quartiles` (quartile edges computed on the test amounts themselves) and `history_buckets`
(prior events of the customer: 0, 1-4, 5-19, 20-99, 100+). `slice_metrics` then gives, for every slice
and model, n, positives, PR-AUC (scikit-learn's average precision) and ROC-AUC, NaN when the slice holds
only one class. `plot_slice_pr_auc` draws the PR-AUC as grouped bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

OTHER = "other"
MISSING = "missing"
ALL = "all"
# (lowest, highest) prior events of each history bucket, highest None = unbounded.
HISTORY_BUCKETS = ((0, 0), (1, 4), (5, 19), (20, 99), (100, None))
SLICE_COLUMNS = ["slice", "value", "model", "n", "positives", "pr_auc", "roc_auc"]


def _values(values: Any) -> pd.Series:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pd.Series(values.to_pandas())
    return pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy())


def categorical_slice(values: Any, top_k: int = 10) -> pd.Categorical:
    """Slice labels of a categorical column: its `top_k` most frequent values, the rest "other".

    Args:
        values: (N,) array-like (numpy, pandas or pyarrow); nulls become "missing".
        top_k: values kept by name (ties broken by value, so the result is deterministic).

    Returns:
        (N,) pandas Categorical of strings, its categories in display order.
    """
    if top_k < 1:
        raise ValueError(f"slices: top_k must be >= 1, got {top_k}")
    series = _values(values)
    text = series.astype(object).where(series.notna(), None)
    text = text.map(lambda v: MISSING if v is None else str(v))
    counts = text[text != MISSING].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = [value for value, _ in ranked[:top_k]]
    labels = np.where(text.isin(keep) | (text == MISSING), text, OTHER).astype(object)
    return _categorical(labels, keep)


def amount_quartiles(amount: Any) -> pd.Categorical:
    """Slice labels by amount quartile, the edges computed on these (test) amounts.

    A bucket holds amounts in (lower edge, upper edge]; equal edges merge (many identical amounts give fewer
    buckets). Labels read `<=12.5`, `12.5-40`, `>95`; NaN amounts are "missing".

    Args:
        amount: (N,) numbers.

    Returns:
        (N,) pandas Categorical of strings, its categories in display order.
    """
    x = np.asarray(_values(amount), dtype=np.float64)
    finite = np.isfinite(x)
    out = np.full(len(x), MISSING, dtype=object)
    if not finite.any():
        return _categorical(out, [])
    edges = np.unique(np.quantile(x[finite], [0.25, 0.5, 0.75]))
    names = [f"<={edges[0]:.4g}"] + [f"{a:.4g}-{b:.4g}" for a, b in zip(edges[:-1], edges[1:])]
    names.append(f">{edges[-1]:.4g}")
    bucket = np.searchsorted(edges, x[finite], side="left")
    out[finite] = np.asarray(names, dtype=object)[bucket]
    return _categorical(out, names)


def history_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def history_buckets(history_length: Any) -> pd.Categorical:
    """Slice labels by the customer's prior events: "0", "1-4", "5-19", "20-99", "100+".

    Args:
        history_length: (N,) non-negative counts of the customer's events before the scored one; NaN or null
            (no customer) is "missing".

    Returns:
        (N,) pandas Categorical of strings, its categories in display order.
    """
    x = np.asarray(_values(history_length), dtype=np.float64)
    if (x[np.isfinite(x)] < 0).any():
        raise ValueError("slices: history_length must be >= 0")
    out = np.full(len(x), MISSING, dtype=object)
    for low, high in HISTORY_BUCKETS:
        inside = (x >= low) & (x <= (np.inf if high is None else high))
        out[inside] = history_label(low, high)
    return _categorical(out, [history_label(lo, hi) for lo, hi in HISTORY_BUCKETS])


def _metrics(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(PR-AUC, ROC-AUC), both NaN when `y` holds one class only."""
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    return float(average_precision_score(y, s)), float(roc_auc_score(y, s))


def _order(labels: pd.Categorical | np.ndarray) -> list[str]:
    """Slice values in display order: a Categorical's own order, else by size with other/missing last."""
    if isinstance(labels, pd.Categorical):
        present = set(labels.unique())
        return [v for v in labels.categories if v in present]
    counts = pd.Series(labels).value_counts()
    ranked = sorted((v for v in counts.index if v not in (OTHER, MISSING)), key=lambda v: (-counts[v], str(v)))
    return ranked + [v for v in (OTHER, MISSING) if v in counts.index]


def _categorical(labels: np.ndarray, order: Sequence[str]) -> pd.Categorical:
    """Labels as a Categorical whose categories are `order` (present ones) then "other" and "missing"."""
    present = set(labels)
    ordered = [v for v in order if v in present] + [v for v in (OTHER, MISSING) if v in present and v not in order]
    return pd.Categorical(labels, categories=ordered)


def slice_metrics(labels: Any, scores: Mapping[str, Any], slices: Mapping[str, Any],
                  include_all: bool = True) -> pd.DataFrame:
    """n, positives, PR-AUC and ROC-AUC for every slice value and model.

    Args:
        labels: (N,) 0/1.
        scores: model name -> (N,) scores.
        slices: slicing name (e.g. `mcc`, `amount_quartile`) -> (N,) slice labels: a builder's Categorical
            (values in its order) or any array (values by size, "other"/"missing" last).
        include_all: add the whole test set as slice "all", value "all", first.

    Returns:
        Tidy DataFrame with columns `slice, value, model, n, positives, pr_auc, roc_auc`, one row per
        (slicing, value, model), slicings in the given order, values in display order.
    """
    y = np.asarray(labels)
    n = len(y)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"slices: labels must be 0/1, got values {np.unique(y)[:5]}")
    models = {m: np.asarray(s, dtype=np.float64) for m, s in scores.items()}
    for model, s in models.items():
        if s.shape != (n,):
            raise ValueError(f"slices: model {model!r} has {s.shape} scores for {n} labels")
    groups: list[tuple[str, Any]] = [(ALL, np.full(n, ALL, dtype=object))] if include_all else []
    for name, values in slices.items():
        if len(values) != n:
            raise ValueError(f"slices: slicing {name!r} has {len(values)} values for {n} labels")
        groups.append((name, values if isinstance(values, pd.Categorical) else np.asarray(values, dtype=object)))
    rows = []
    for name, values in groups:
        array = np.asarray(values, dtype=object)
        for value in _order(values):
            inside = array == value
            yv = y[inside]
            for model, s in models.items():
                pr, roc = _metrics(yv, s[inside])
                rows.append((name, value, model, int(inside.sum()), int(yv.sum()), pr, roc))
    return pd.DataFrame(rows, columns=SLICE_COLUMNS)


def slices_from_scores(table: pa.Table | pd.DataFrame, models: Sequence[str], columns: Sequence[str] = (),
                       amount: str | None = None, history: str | None = None, top_k: int = 10) -> pd.DataFrame:
    """`slice_metrics` on a scores table (see foundation.evaluation.scores).

    Args:
        table: the scores table (`label`, `score_<model>` and the slice columns).
        models: models to compare (their `score_<model>` columns).
        columns: categorical columns to slice by (top-K values + "other").
        amount: column of amounts to bucket by test quartiles (slicing `amount_quartile`).
        history: column of the customer's prior event counts (slicing `history_length`).
        top_k: values kept by name per categorical column.

    Returns:
        As `slice_metrics`.
    """
    df = table.to_pandas() if isinstance(table, pa.Table) else table
    wanted = ["label", *(f"score_{m}" for m in models), *columns, *(c for c in (amount, history) if c)]
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        raise ValueError(f"slices: scores table lacks columns {absent} (has {list(df.columns)})")
    slices: dict[str, pd.Categorical] = {c: categorical_slice(df[c], top_k) for c in columns}
    if amount:
        slices["amount_quartile"] = amount_quartiles(df[amount])
    if history:
        slices["history_length"] = history_buckets(df[history])
    return slice_metrics(df["label"].to_numpy(), {m: df[f"score_{m}"].to_numpy() for m in models}, slices)


def plot_slice_pr_auc(path: str | Path, metrics: pd.DataFrame, title: str = "PR-AUC per slice") -> Path:
    """Grouped bar chart of PR-AUC per slice value (x) and model (bars), one panel per slicing.

    Args:
        path: PNG to write.
        metrics: output of `slice_metrics`.
        title: figure title.

    Returns:
        The path written. Slices with one class (NaN) are drawn without a bar and marked "n/a".
    """
    path = Path(path)
    names = list(dict.fromkeys(metrics["slice"]))
    if not names:
        raise ValueError("slices: nothing to plot (empty metrics table)")
    models = list(dict.fromkeys(metrics["model"]))
    widest = max(metrics.groupby("slice")["value"].nunique())
    fig, axes = plt.subplots(len(names), 1, figsize=(max(6.0, 0.9 * widest * max(1, len(models)) / 2 + 2),
                                                     2.8 * len(names)), squeeze=False)
    width = 0.8 / max(1, len(models))
    for ax, name in zip(axes[:, 0], names):
        part = metrics[metrics["slice"] == name]
        values = list(dict.fromkeys(part["value"]))
        x = np.arange(len(values))
        for i, model in enumerate(models):
            rows = part[part["model"] == model].set_index("value").reindex(values)
            ax.bar(x + (i - (len(models) - 1) / 2) * width, rows["pr_auc"].fillna(0.0), width, label=model)
        first = part.drop_duplicates("value").set_index("value").reindex(values)
        ax.set_xticks(x, [f"{v}\nn={n}, pos={p}" + ("" if p and p < n else " (n/a)")
                          for v, n, p in zip(values, first["n"], first["positives"])], fontsize=7)
        ax.set_ylabel("PR-AUC")
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(len(models), 4), loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
