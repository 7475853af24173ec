"""Report figures (matplotlib, Agg backend): curves, score distributions, label efficiency, loss, embeddings.

Each function draws one figure, saves it as PNG and returns the path; none of them shows anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from foundation.evaluation.metrics import pr_curve, roc_curve  # noqa: E402

_MAX_CURVE_POINTS = 2000  # a 200k-point ROC line draws slowly and looks the same thinned


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep at most _MAX_CURVE_POINTS evenly spaced points (always the first and last)."""
    n = len(arrays[0])
    if n <= _MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.linspace(0, n - 1, _MAX_CURVE_POINTS).astype(np.int64))
    return tuple(a[keep] for a in arrays)


def _save(fig: plt.Figure, path: Path, title_lines: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed margins in inches: tight_layout measures every text box and costs more than drawing the figure
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                        top=1 - 0.35 * title_lines / height, wspace=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(path: Path, task: str, curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """ROC (linear and log FPR) and precision-recall curves of every model on one figure.

    Args:
        path: output PNG.
        task: title.
        curves: model label -> (labels (N,), scores (N,)) on the same test examples.
    """
    fig, (roc_ax, log_ax, pr_ax) = plt.subplots(1, 3, figsize=(16, 5))
    base_rate = None
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        fpr, tpr = _thin(fpr, tpr)
        roc_ax.plot(fpr, tpr, label=name, lw=1.3)
        log_ax.plot(np.maximum(fpr, 1e-5), tpr, label=name, lw=1.3)
        recall, precision, _ = pr_curve(labels, scores)
        recall, precision = _thin(recall, precision)
        pr_ax.step(recall, precision, where="post", label=name, lw=1.3)
        base_rate = float(np.mean(labels))
    roc_ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    roc_ax.set(xlabel="false positive rate", ylabel="recall (TPR)", title=f"{task}: ROC")
    log_ax.axvline(0.01, color="grey", ls=":", lw=1)
    log_ax.set(xscale="log", xlim=(1e-4, 1), xlabel="false positive rate (log)", ylabel="recall (TPR)",
               title=f"{task}: ROC, low-FPR region")
    if base_rate is not None:
        pr_ax.axhline(base_rate, color="grey", ls=":", lw=1, label=f"base rate {base_rate:.3g}")
    pr_ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), title=f"{task}: precision-recall")
    for ax in (roc_ax, log_ax, pr_ax):
        ax.grid(alpha=0.3)
    pr_ax.legend(fontsize=8)
    return _save(fig, path)


def plot_score_distributions(path: Path, task: str, curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Histograms of each model's test scores by class (density, log count axis), one panel per model."""
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.8), squeeze=False)
    for ax, (name, (labels, scores)) in zip(axes[0], curves.items()):
        labels = np.asarray(labels)
        bins = np.histogram_bin_edges(scores, bins=50)
        for value, colour in ((0, "tab:blue"), (1, "tab:red")):
            ax.hist(scores[labels == value], bins=bins, density=True, alpha=0.55, color=colour,
                    label=f"label {value} (n={int((labels == value).sum())})")
        ax.set(yscale="log", xlabel="score", ylabel="density (log scale)", title=name)
        ax.legend(fontsize=7)
    fig.suptitle(f"{task}: test score distributions by class")
    return _save(fig, path, title_lines=2)


def plot_label_efficiency(path: Path, task: str, points: Mapping[str, Sequence[tuple[float, dict]]],
                          metric: str = "pr_auc") -> Path:
    """A metric (with its confidence interval) against the fraction of training labels, per model.

    Args:
        points: model -> [(label_fraction, {"value", "ci_low", "ci_high"}), ...].
    """
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, series in points.items():
        series = sorted(series, key=lambda p: p[0])
        x = np.array([p[0] for p in series])
        value = np.array([p[1]["value"] for p in series])
        low = np.array([p[1]["ci_low"] for p in series])
        high = np.array([p[1]["ci_high"] for p in series])
        ax.plot(x, value, marker="o", label=name)
        ax.fill_between(x, low, high, alpha=0.2)
    ax.set(xscale="log", xlabel="fraction of training labels", ylabel=metric, title=f"{task}: label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


TOTAL = "total"
_STAGE_COLOURS = {"train": "tab:blue", "val": "tab:orange", "validation": "tab:orange", "test": "tab:green"}


def loss_panels(metrics_csv: str | Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The loss series of a Lightning CSVLogger metrics.csv, grouped the way `plot_loss_curves` draws them.

    Columns `<stage>/loss` go to the `total` panel, `<stage>/loss_<objective>` to the objective's panel;
    per-field columns (`<stage>/<objective>/<field>_loss`) are left out (dozens of them; they stay in the CSV).
    A loss column without a stage prefix joins the `total` panel under its own name. Empty cells (a CSV row
    holds only the metrics logged at that moment) are skipped per column.

    Returns:
        panel (`total`, then objectives in column order) -> series label (the stage) -> (steps, values).
    """
    table = pacsv.read_csv(metrics_csv)
    if "step" not in table.column_names:
        raise ValueError(f"{metrics_csv}: no `step` column (is it a Lightning CSVLogger metrics.csv?)")
    loss_columns = [c for c in table.column_names if "loss" in c]
    if not loss_columns:
        raise ValueError(f"{metrics_csv}: no column with 'loss' in its name (columns: {table.column_names})")
    step = table.column("step").to_numpy(zero_copy_only=False).astype(np.float64)
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {TOTAL: {}}
    for column in loss_columns:
        stage, _, rest = column.partition("/")
        if not rest:
            panel, label = TOTAL, column
        elif rest == "loss":
            panel, label = TOTAL, stage
        elif rest.startswith("loss_") and "/" not in rest:
            panel, label = rest[len("loss_"):], stage
        else:
            continue  # a per-field loss
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(values) & np.isfinite(step)
        if ok.any():
            panels.setdefault(panel, {})[label] = (step[ok], values[ok])
    return {name: series for name, series in panels.items() if series}


def plot_loss_curves(path: Path, metrics_csv: str | Path) -> Path:
    """Pretraining loss against the step: the total train/validation loss in the first panel, then one small
    panel per objective (its own y scale), train and validation in the same colours everywhere.

    Args:
        path: output PNG.
        metrics_csv: a Lightning CSVLogger metrics.csv (series as `loss_panels` groups them).
    """
    panels = loss_panels(metrics_csv)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    others = iter(plt.get_cmap("tab10").colors[2:])
    colours: dict[str, str] = {}
    for ax, (name, series) in zip(axes.flat, panels.items()):
        for label, (x, y) in series.items():
            colour = colours.setdefault(label, _STAGE_COLOURS.get(label) or next(others, "tab:grey"))
            ax.plot(x, y, color=colour, label=label, lw=1.2, marker="o" if len(x) < 30 else None, ms=3)
        ax.set(xlabel="step", ylabel="loss", title="total loss" if name == TOTAL else name)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("pretraining loss (total, then per objective)")
    fig.subplots_adjust(hspace=0.55)
    return _save(fig, path, title_lines=2)


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, H) embeddings on their first two principal components (scikit-learn's PCA, seeded).

    Returns:
        (N, 2) coordinates and the (2,) share of variance each component explains.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"embeddings must be (N >= 2, H), got shape {x.shape}")
    # random_state: the randomized solver (picked for wide, short inputs) must draw the same plot every run
    pca = PCA(n_components=min(2, x.shape[1]), random_state=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # identical embeddings: 0 / 0 variance explained
        coords = pca.fit_transform(x)
    explained = np.nan_to_num(pca.explained_variance_ratio_)
    if coords.shape[1] < 2:  # H == 1: pad so the plot still has two axes
        coords = np.hstack([coords, np.zeros((len(x), 1))])
        explained = np.r_[explained, 0.0]
    return coords, explained


def plot_embedding_projection(path: Path, embeddings: np.ndarray, traits: np.ndarray,
                              trait_name: str = "trait", entity_type: str = "customer",
                              max_points: int = 5000, seed: int = 0) -> Path:
    """2-D PCA of entity embeddings coloured by a known trait (e.g. the customer's segment); the most frequent
    value is drawn first (small, faint), rarer values over it (larger, opaque).

    Args:
        embeddings: (N, H).
        traits: (N,) trait value per entity (any type; shown as categories).
        max_points: random subsample drawn to keep the scatter readable.
    """
    traits = np.asarray(traits)
    if len(traits) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(traits)} trait values")
    coords, explained = pca_2d(embeddings)
    if len(coords) > max_points:
        keep = np.random.default_rng(seed).choice(len(coords), max_points, replace=False)
        coords, traits = coords[keep], traits[keep]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    names = traits.astype(str)
    values, counts = np.unique(names, return_counts=True)
    colours = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
    # the largest class first, small and faint; rarer ones on top of it, larger: a 1% class stays visible
    for rank, i in enumerate(np.argsort(-counts, kind="stable")):
        mask = names == values[i]
        ax.scatter(coords[mask, 0], coords[mask, 1], s=6 if rank == 0 else 18, alpha=0.35 if rank == 0 else 0.85,
                   color=colours(i % colours.N), label=f"{values[i]} (n={counts[i]})", zorder=2 + rank)
    ax.set(xlabel=f"PC1 ({explained[0]:.0%} of variance)", ylabel=f"PC2 ({explained[1]:.0%})",
           title=f"{entity_type} embeddings by {trait_name}")
    ax.legend(fontsize=7, markerscale=2, title=trait_name)
    return _save(fig, path)
