"""The Keras callbacks of fit, as units: the learning-rate schedules' shapes (no training)."""

import pytest

from alexnet_exp.config import OptimizerConfig
from alexnet_exp.fit_callbacks import StepSchedule, step_schedule


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
