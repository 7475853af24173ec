"""The input checks every head's fit shares (`check_train_validation`): clear errors naming the set."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.heads.base import check_train_validation
from foundation.heads.gbdt import GBDTHead
from foundation.heads.probe import ProbeHead

Y = np.array([0, 1, 0, 1])


def test_labels_come_back_as_float():
    X = np.zeros((4, 2))
    _, y_train, _, y_val = check_train_validation(X, Y, X, Y)
    assert y_train.dtype == np.float64 and y_val.dtype == np.float64


@pytest.mark.parametrize("head", [GBDTHead, ProbeHead])
def test_train_and_validation_must_have_the_same_width(head):
    with pytest.raises(ValueError, match=r"^train has 2 features, validation 3$"):
        head().fit(np.zeros((4, 2)), Y, np.zeros((4, 3)), Y)


def test_single_class_validation_is_named():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"^validation: labels hold a single class"):
        check_train_validation(X, Y, X, np.zeros(4))
