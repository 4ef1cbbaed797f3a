"""The figures logged with every run: what a reader of the MLflow run sees in them."""

import numpy as np
import pytest

from alexnet_exp import plots


def test_training_curves_show_train_and_val_per_epoch_with_gaps_where_val_is_missing():
    history = [{"loss": 2.0, "accuracy": 0.3, "val_loss": 2.2, "val_accuracy": 0.25},
               {"loss": 1.5, "accuracy": 0.5},  # an epoch without validation
               {"loss": 1.0, "accuracy": 0.7, "val_loss": 1.4, "val_accuracy": 0.6}]
    figure = plots.training_curves(history)
    try:
        loss, accuracy = figure.axes
        assert (loss.get_title(), accuracy.get_title()) == ("loss", "accuracy")
        train, val = accuracy.get_lines()
        assert (train.get_label(), val.get_label()) == ("train_accuracy", "val_accuracy")
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])  # epochs count from 1
        np.testing.assert_array_equal(train.get_ydata(), [0.3, 0.5, 0.7])
        np.testing.assert_array_equal(val.get_ydata(), [0.25, np.nan, 0.6])
        assert all(tick == int(tick) for tick in loss.get_xticks())  # no epoch 1.5
    finally:
        plots.close(figure)


def test_the_confusion_matrix_shows_counts_coloured_by_the_rate_of_each_true_class():
    matrix = np.array([[90, 10], [1, 3]])  # a big class and a small one
    figure = plots.confusion_matrix_figure(matrix, ["cat", "dog"], "val")
    try:
        ax = figure.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "val")
        np.testing.assert_allclose(ax.images[0].get_array(), [[0.9, 0.1], [0.25, 0.75]])
        texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
        # (x, y) = (predicted, true); white on the dark cells (rate over one half)
        assert texts == {((0, 0), "90"): "white", ((1, 0), "10"): "black",
                         ((0, 1), "1"): "black", ((1, 1), "3"): "white"}
    finally:
        plots.close(figure)


def test_a_class_with_no_samples_is_an_empty_row_not_a_division_by_zero():
    with np.errstate(all="raise"):
        figure = plots.confusion_matrix_figure(np.array([[0, 0], [2, 2]]), ["a", "b"], "t")
    try:
        np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), [[0, 0], [0.5, 0.5]])
    finally:
        plots.close(figure)


@pytest.mark.parametrize("classes", [2, 10])
def test_the_confusion_figure_grows_with_the_classes(classes):
    figure = plots.confusion_matrix_figure(np.eye(classes, dtype=int),
                                           [f"c{i}" for i in range(classes)], "t")
    try:
        width, height = figure.get_size_inches()
        assert width == height == max(4.0, 0.6 * classes + 2)
    finally:
        plots.close(figure)
