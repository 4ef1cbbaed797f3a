"""The Keras callbacks of fit, as units: the learning-rate schedules' shapes, the plateau
watcher (no training)."""

import pytest

from alexnet_exp.config import OptimizerConfig, TrainerConfig
from alexnet_exp.fit_callbacks import StepSchedule, epoch_line, step_schedule, watchers


def test_cosine_and_one_cycle_schedules_have_their_shapes():
    cosine = StepSchedule("cosine", 0.1, epochs=10, steps_per_epoch=10, warmup_epochs=2)
    assert cosine.rate(0) == pytest.approx(0.1 / 20)  # linear warm-up over 20 steps
    assert cosine.rate(19) == pytest.approx(0.1)
    assert cosine.rate(20 + 40) == pytest.approx(0.05)  # half way through the cosine
    assert cosine.rate(100) == pytest.approx(0.0, abs=1e-12)
    cycle = StepSchedule("one_cycle", 0.1, epochs=10, steps_per_epoch=10)
    assert cycle.rate(0) == pytest.approx(0.1 / 25)
    assert cycle.rate(30) == pytest.approx(0.1)  # the peak at 30% of the steps
    assert cycle.rate(100) == pytest.approx(0.1 / 1e4)
    rates = [cycle.rate(step) for step in range(101)]
    assert rates.index(max(rates)) == 30
    assert step_schedule(OptimizerConfig(), 0.1, 10, 10) is None  # plateau: a callback


def test_the_epoch_line_is_one_line_as_keras_verbose_2_shows_it():
    metrics = {"accuracy": 0.5, "loss": 1.25, "val_accuracy": 0.75, "val_loss": 0.5,
               "lr": 1e-4, "epoch_seconds": 2.4, "images_per_second": 600.4}
    assert epoch_line(3, 15, metrics) == (
        "Epoch 3/15 - 2s - 600 images/s - accuracy: 0.5000 - loss: 1.2500 - val_accuracy: 0.7500"
        " - val_loss: 0.5000 - lr: 1.0000e-04")


def test_a_plateau_lowers_the_rate_without_a_line_of_its_own(capsys):
    # the epoch line shows the rate; Keras's "ReduceLROnPlateau reducing learning rate" line
    # came between two epoch lines
    import keras

    (plateau,) = watchers(TrainerConfig(reduce_lr_patience=1, early_stopping_patience=None), None)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    plateau.set_model(model)
    plateau.on_train_begin()
    for epoch in range(3):
        plateau.on_epoch_end(epoch, {"val_loss": 1.0})
    assert float(model.optimizer.learning_rate) < 0.1
    assert capsys.readouterr().out == ""
