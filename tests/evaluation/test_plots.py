"""Report figures: the 2-D PCA of embeddings behind the embedding projection plot, the loss panels, labelled
axes and a visible minority class."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.evaluation import plots
from foundation.evaluation.plots import loss_panels, pca_2d, plot_embedding_projection, plot_loss_curves


def test_pca_2d_equals_the_svd_projection_up_to_sign():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)) * np.r_[5.0, 2.0, np.ones(6)]  # two dominant directions
    coords, explained = pca_2d(x)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(coords), np.abs(reference), atol=1e-8)
    np.testing.assert_allclose(explained, (singular**2 / (singular**2).sum())[:2], rtol=1e-10)
    assert explained[0] > explained[1] > 0.1
    np.testing.assert_array_equal(coords, pca_2d(x)[0])  # deterministic


def test_pca_2d_pads_one_feature_and_survives_constant_embeddings():
    coords, explained = pca_2d(np.arange(6.0)[:, None])
    assert coords.shape == (6, 2) and np.all(coords[:, 1] == 0)
    np.testing.assert_allclose(explained, [1.0, 0.0])
    coords, explained = pca_2d(np.ones((5, 3)))
    assert np.all(coords == 0) and np.all(explained == 0)


@pytest.mark.parametrize("shape", [(1, 4), (7,)])
def test_pca_2d_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="embeddings must be"):
        pca_2d(np.zeros(shape))


def test_embedding_projection_writes_a_png(tmp_path):
    rng = np.random.default_rng(1)
    path = plot_embedding_projection(tmp_path / "proj.png", rng.normal(size=(50, 4)), rng.integers(0, 3, 50))
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open instead of saved."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, title_lines=1: figures.append(fig) or path)
    return figures


def _metrics_csv(path):
    """A CSVLogger log: total and per-objective losses of train (every step) and val (every 5th), and 20
    per-field columns."""
    fields = [f"{stage}/next_event/f{i}_loss" for stage in ("train", "val") for i in range(10)]
    header = ["epoch", "step", "train/loss", "val/loss", "train/loss_next_event", "val/loss_next_event",
              "train/loss_masked", "val/loss_masked", *fields]
    rows = []
    for step in range(12):
        val = step % 5 == 4
        values = [0, step, 3 - 0.1 * step, "", 2 - 0.1 * step, "", 1 - 0.05 * step, "", *[0.5] * 10, *[""] * 10]
        rows.append(values)
        if val:
            rows.append([0, step, "", 3.1 - 0.1 * step, "", 2.1, "", 1.1, *[""] * 10, *[0.4] * 10])
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def test_loss_panels_total_then_objectives_without_field_losses(tmp_path):
    panels = loss_panels(_metrics_csv(tmp_path / "metrics.csv"))
    assert list(panels) == ["total", "next_event", "masked"]
    assert all(set(series) == {"train", "val"} for series in panels.values())
    steps, values = panels["total"]["val"]
    np.testing.assert_array_equal(steps, [4, 9])
    np.testing.assert_allclose(values, [2.7, 2.2])
    assert len(panels["masked"]["train"][0]) == 12


def test_loss_figure_is_small_multiples_with_one_readable_legend(tmp_path, drawn):
    plot_loss_curves(tmp_path / "loss.png", _metrics_csv(tmp_path / "metrics.csv"))
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["total loss", "next_event", "masked"]
    assert all(len(ax.lines) == 2 for ax in axes)
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["train", "val"]
    assert axes[1].lines[0].get_color() == axes[0].lines[0].get_color()  # one colour per stage


def test_score_distribution_axes_are_labelled(tmp_path, drawn):
    rng = np.random.default_rng(0)
    labels = (rng.random(200) < 0.1).astype(int)
    plots.plot_score_distributions(tmp_path / "s.png", "fraud", {"mlp": (labels, rng.random(200))})
    ax = drawn[0].axes[0]
    assert ax.get_ylabel() == "density (log scale)" and ax.get_xlabel() == "score"


def test_projection_draws_the_minority_class_last_and_larger(tmp_path, drawn):
    rng = np.random.default_rng(2)
    traits = np.array(["no fraud"] * 190 + ["fraud"] * 10)
    plot_embedding_projection(tmp_path / "p.png", rng.normal(size=(200, 4)), traits, "fraud label")
    majority, minority = drawn[0].axes[0].collections
    assert minority.get_label() == "fraud (n=10)" and majority.get_label() == "no fraud (n=190)"
    assert minority.get_zorder() > majority.get_zorder()
    assert minority.get_sizes()[0] > majority.get_sizes()[0] and minority.get_alpha() > majority.get_alpha()
