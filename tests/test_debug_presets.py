"""The debug group (conf/debug/) and tracking=none, run as a user runs them: the real CLI on a
tiny real image folder, the runs read back from the real MLflow store."""

import json

import pytest
from helpers import TINY_MODEL, cli, runs_of, store

RUN = ["data=folder", *TINY_MODEL, "trainer.verbose=2"]


@pytest.mark.slow
def test_debug_fast_runs_one_short_epoch_and_records_nothing(tmp_path, tiny_data):
    result = cli(tmp_path, "debug=fast", *RUN, f"data.dir={tiny_data}", "trainer.batch_size=4")
    assert result.returncode == 0, result.stderr[-3000:]
    # 28 train images make 7 batches of 4: debug=fast reads 3 of them (and 2 val batches)
    assert "limited to 3 train and 2 val batches per epoch" in result.stdout
    assert "Epoch 1/1 - " in result.stdout and "Epoch 2/" not in result.stdout
    assert result.stdout.rstrip().endswith("nothing recorded in MLflow (tracking=none)")
    assert not (tmp_path / "mlruns").exists()  # no store was opened, so none was created
    job = tmp_path / "outputs" / "run"
    assert json.loads((job / "summary.json").read_text())["epochs"] == 1
    assert not (job / "checkpoints").exists() and not (job / "tensorboard").exists()


@pytest.mark.slow
def test_debug_overfit_learns_its_few_batches_by_heart(tmp_path, tiny_data):
    client = store(tmp_path)
    result = cli(tmp_path, "debug=overfit", *RUN, f"data.dir={tiny_data}",
                 "trainer.epochs=30")  # the tiny model needs ~20; the preset gives bigger ones 60
    assert result.returncode == 0, result.stderr[-3000:]
    assert "limited to 2 train and 1 val batches per epoch" in result.stdout
    (run,) = runs_of(client, "debug")  # apart from the real experiments
    accuracy = [m.value for m in client.get_metric_history(run.info.run_id, "accuracy")]
    assert len(accuracy) == 30
    assert accuracy[0] < 0.9 and min(accuracy[-3:]) >= 0.99  # from guessing to every image
    assert run.data.params["trainer.limit_train_batches"] == "2"
