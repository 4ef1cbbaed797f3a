"""The seeded, stratified split of a class folder; the splits through the whole pipeline are
test_data's, a pack's are test_packed's."""

from collections import Counter

import numpy as np
import pytest

from alexnet_exp import inputs
from alexnet_exp.errors import DataError


def test_stratified_split_is_deterministic_disjoint_complete_and_proportional():
    labels = np.array([0] * 40 + [1] * 20 + [2] * 20, dtype=np.int32)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]

    train, val = inputs.stratified_split(labels, 0.25, seed=3)
    train2, val2 = inputs.stratified_split(labels, 0.25, seed=3)
    other_train, _ = inputs.stratified_split(labels, 0.25, seed=4)

    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(val, val2)
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(len(labels)))
    assert Counter(labels[val].tolist()) == {0: 10, 1: 5, 2: 5}
    assert Counter(labels[train].tolist()) == {0: 30, 1: 15, 2: 15}
    assert set(other_train) != set(train)


def test_stratified_split_of_too_few_images_is_a_data_error():
    with pytest.raises(DataError, match="val_split"):
        inputs.stratified_split(np.array([0, 0, 0, 1], dtype=np.int32), 0.25, seed=0)
