"""Population stability index (PSI) per feature between a reference sample (the training period) and a
later one (the test period), with the drifting features flagged.

    PSI = sum over bins of (test share - train share) * ln(test share / train share)

Numeric features are cut at the train sample's quantiles (`bins` bins, a value equal to an edge falls in
the lower bin, repeated edges merge) plus one bin for NaN/null; categorical features (strings, booleans,
dictionaries) use one bin per value: the `max_categories` most frequent train values, every other value
("other") and null. A share of 0 becomes `epsilon` so an empty bin counts as a large, finite shift. The
usual reading: below 0.1 stable, 0.1-0.2 moderate, above 0.2 a drift worth a look.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

DRIFT_COLUMNS = ["feature", "kind", "psi", "status", "flagged", "n_bins", "n_train", "n_test"]
STABLE, MODERATE, DRIFT = "stable", "moderate", "drift"
_OTHER = "\0other"  # never a real value
_NULL = "\0null"


def psi(train_shares: np.ndarray, test_shares: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins (zero shares become `epsilon`).

    Args:
        train_shares, test_shares: (B,) non-negative shares, each summing to 1.
        epsilon: stand-in for an empty bin.

    Returns:
        The PSI (>= 0).
    """
    e = np.maximum(np.asarray(train_shares, np.float64), epsilon)
    a = np.maximum(np.asarray(test_shares, np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(codes: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_bins).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def numeric_bins(train: np.ndarray, test: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin codes of both samples on the train quantiles; NaN is the last bin.

    Returns:
        (train codes, test codes, number of bins).
    """
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    finite = train[~np.isnan(train)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.zeros(0)
    nan_bin = len(edges) + 1

    def code(x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), nan_bin, np.searchsorted(edges, x, side="left"))

    return code(train), code(test), nan_bin + 1


def categorical_bins(train: Sequence[Any], test: Sequence[Any], max_categories: int = 50
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin codes of both samples by value: the top train values, "other" and null.

    Returns:
        (train codes, test codes, number of bins).
    """
    def text(values: Any) -> pd.Series:
        s = pd.Series(values, dtype=object)
        return s.where(s.notna(), _NULL).astype(str)

    tr, te = text(train), text(test)
    counts = tr[tr != _NULL].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
    index = {value: i for i, (value, _) in enumerate(ranked)}
    index[_OTHER], index[_NULL] = len(index), len(index) + 1

    def code(s: pd.Series) -> np.ndarray:
        return s.map(index).fillna(index[_OTHER]).to_numpy(np.int64)

    return code(tr), code(te), len(index)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _frame(sample: pa.Table | pd.DataFrame, name: str) -> pd.DataFrame:
    if isinstance(sample, pa.Table):
        return sample.to_pandas()
    if isinstance(sample, pd.DataFrame):
        return sample
    raise TypeError(f"drift: {name} must be a pyarrow Table or a pandas DataFrame, got {type(sample).__name__}")


def population_stability(
    train: pa.Table | pd.DataFrame,
    test: pa.Table | pd.DataFrame,
    features: Sequence[str] | None = None,
    bins: int = 10,
    threshold: float = 0.2,
    moderate: float = 0.1,
    epsilon: float = 1e-4,
    max_categories: int = 50,
) -> pd.DataFrame:
    """PSI of every feature between the train and test samples, most drifting first.

    Args:
        train, test: one row per event, one column per feature.
        features: columns to check; default every column the two samples share.
        bins: quantile bins of numeric features (on the train sample).
        threshold: PSI above which a feature is flagged `drift`.
        moderate: PSI above which (up to `threshold`) a feature is `moderate`.
        epsilon: share used for empty bins.
        max_categories: values of a categorical feature kept by name (the rest share one bin).

    Returns:
        DataFrame with columns `feature, kind (numeric|categorical), psi, status (stable|moderate|drift),
        flagged (psi > threshold), n_bins, n_train, n_test`, sorted by PSI descending then feature name.
    """
    if bins < 2:
        raise ValueError(f"drift: bins must be >= 2, got {bins}")
    if not 0 <= moderate <= threshold:
        raise ValueError(f"drift: need 0 <= moderate ({moderate}) <= threshold ({threshold})")
    tr, te = _frame(train, "train"), _frame(test, "test")
    if features is None:
        features = [c for c in tr.columns if c in set(te.columns)]
    absent = [(f, side) for f in features for side, df in (("train", tr), ("test", te)) if f not in df.columns]
    if absent:
        raise ValueError(f"drift: feature {absent[0][0]!r} is missing from the {absent[0][1]} sample")
    if len(tr) == 0 or len(te) == 0:
        raise ValueError(f"drift: empty sample (train {len(tr)} rows, test {len(te)} rows)")
    rows = []
    for feature in features:
        numeric = _is_numeric(tr[feature]) and _is_numeric(te[feature])
        if numeric:
            a, b, n_bins = numeric_bins(tr[feature].to_numpy(np.float64, na_value=np.nan),
                                        te[feature].to_numpy(np.float64, na_value=np.nan), bins)
        else:
            a, b, n_bins = categorical_bins(tr[feature], te[feature], max_categories)
        value = psi(_shares(a, n_bins), _shares(b, n_bins), epsilon)
        status = DRIFT if value > threshold else MODERATE if value > moderate else STABLE
        rows.append((feature, "numeric" if numeric else "categorical", value, status, value > threshold,
                     n_bins, len(tr), len(te)))
    out = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return out.sort_values(["psi", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def plot_drift(path: str | Path, table: pd.DataFrame, top: int = 20, threshold: float = 0.2,
               moderate: float = 0.1, title: str = "Feature drift, train -> test (PSI)") -> Path:
    """Horizontal bars of the `top` features by PSI, coloured by status, with the two thresholds drawn.

    Args:
        path: PNG to write.
        table: output of `population_stability`.

    Returns:
        The path written.
    """
    if table.empty:
        raise ValueError("drift: nothing to plot (empty PSI table)")
    part = table.sort_values("psi", ascending=False, kind="stable").head(top).iloc[::-1]
    colours = part["status"].map({STABLE: "tab:green", MODERATE: "tab:orange", DRIFT: "tab:red"})
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.3 * len(part)))
    ax.barh(np.arange(len(part)), part["psi"], color=colours.fillna("tab:grey"))
    ax.set_yticks(np.arange(len(part)), part["feature"], fontsize=8)
    ax.axvline(moderate, color="tab:orange", linestyle=":", label=f"moderate ({moderate:g})")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"drift ({threshold:g})")
    ax.set_xlabel("population stability index")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
