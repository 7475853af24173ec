"""Report figures: the 2-D PCA of embeddings behind the embedding projection plot."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.evaluation.plots import pca_2d, plot_embedding_projection


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
