"""PSI on fixtures with hand-computed answers: identical samples, a known numeric shift, a categorical shift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from foundation.evaluation.drift import numeric_bins, plot_drift, population_stability, psi


def test_identical_samples_have_zero_psi():
    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"amount": rng.lognormal(3, 1, 5000), "mcc": rng.choice(["5411", "5812", "5999"], 5000)})
    table = population_stability(sample, sample.copy())
    assert table.psi.abs().max() < 1e-12 and (table.status == "stable").all() and not table.flagged.any()


def test_numeric_shift_matches_the_hand_computed_psi():
    # Two bins cut at the train median 1.5: train shares (0.5, 0.5), test (0.75, 0.25), NaN bin empty in both.
    # PSI = (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5) = 0.25 ln 1.5 + 0.25 ln 2 = 0.2746531
    train = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    test = pd.DataFrame({"x": [0.0, 0.0, 0.0, 3.0]})
    table = population_stability(train, test, bins=2)
    assert table.psi[0] == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2.0), abs=1e-12)
    assert table.kind[0] == "numeric" and table.status[0] == "drift" and table.flagged[0]
    assert not population_stability(train, test, bins=2, threshold=0.3, moderate=0.2).flagged[0]
    # Edge 2.5 (the train median): a value on it falls in the lower bin; NaN has its own bin; empty bins become epsilon.
    a, b, n_bins = numeric_bins(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.5, 2.6, np.nan]), bins=2)
    assert n_bins == 3 and a.tolist() == [0, 0, 1, 1] and b.tolist() == [0, 1, 2]
    assert psi([1.0, 0.0], [0.0, 1.0], epsilon=0.01) == pytest.approx(2 * 0.99 * math.log(100))


def test_categorical_shift_is_flagged_and_sorted_first():
    train = pa.table({"category": ["a"] * 50 + ["b"] * 50, "amount": np.arange(100.0),
                      "hour": ["day"] * 80 + ["night"] * 20})
    test = pa.table({"category": ["a"] * 90 + ["b"] * 10, "amount": np.arange(100.0),
                     "hour": ["day"] * 70 + ["night"] * 30})
    table = population_stability(train, test)
    assert table.feature.tolist() == ["category", "hour", "amount"]
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.8788898
    assert table.psi[0] == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5.0), abs=1e-12)
    assert table.status.tolist() == ["drift", "stable", "stable"] and table.flagged.tolist() == [True, False, False]
    assert table.kind.tolist() == ["categorical", "categorical", "numeric"]
    # 0.1 ln(0.7/0.8) ... = 0.0581; a new value unseen in train lands in "other" (epsilon in train).
    assert table.psi[1] == pytest.approx(-0.1 * math.log(0.7 / 0.8) + 0.1 * math.log(0.3 / 0.2), abs=1e-12)
    unseen = population_stability(pd.DataFrame({"c": ["a", "a"]}), pd.DataFrame({"c": ["a", "z"]}))
    assert unseen.psi[0] == pytest.approx(-0.5 * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4), abs=1e-9)


def test_moderate_band_and_bad_inputs(tmp_path):
    train = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    test = pd.DataFrame({"c": ["a"] * 68 + ["b"] * 32})  # PSI 0.1312
    assert population_stability(train, test).status[0] == "moderate"
    with pytest.raises(ValueError, match="feature 'zz' is missing from the train sample"):
        population_stability(train, test, features=["zz"])
    with pytest.raises(ValueError, match="moderate"):
        population_stability(train, test, threshold=0.1, moderate=0.2)
    with pytest.raises(ValueError, match="empty sample"):
        population_stability(train.iloc[:0], test)
    path = plot_drift(tmp_path / "drift.png", population_stability(train, test))
    assert path.read_bytes()[:4] == b"\x89PNG"
