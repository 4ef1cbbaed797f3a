"""``alexnet-exp-pack`` and ``data=records`` as a user runs them: pack a folder, train on the
pack, evaluate on a packed test set, read the record back from the real MLflow store."""

import json

import pytest
from helpers import TINY_MODEL, artifact_text, cli, make_image_folder, store

from alexnet_exp import pack, packed
from alexnet_exp.config import DataConfig
from alexnet_exp.keys import DATA_FINGERPRINT_TAG
from alexnet_exp.tool_config import PackConfig

CLASSES = {"apple": 10, "kiwi": 10, "plum": 10}


def test_pack_refuses_a_mistake_in_one_line(tmp_path):
    result = cli(tmp_path, "data.dir=.", program="alexnet-exp-pack")
    assert result.returncode == 2
    assert result.stderr.strip() == ("alexnet-exp-pack: error: output is required:"
                                     " alexnet-exp-pack data.dir=<class folders>"
                                     " output=<new folder>")
    result = cli(tmp_path, "data=records", "data.dir=.", "output=p", program="alexnet-exp-pack")
    assert result.returncode == 2 and "is a pack already" in result.stderr


@pytest.mark.slow
def test_train_on_a_pack_and_evaluate_on_a_packed_test_set(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=CLASSES, size=(48, 40))
    test = make_image_folder(tmp_path / "test", classes={c: 3 for c in CLASSES}, size=(48, 40),
                             seed=7)
    env = {"ALEXNET_EXP_CACHE_DIR": str(tmp_path / "cache")}
    pack.run_pack(PackConfig(DataConfig(name="folder", dir=str(data), val_split=0.25),
                             output=str(tmp_path / "pack"), shard_size="10KB"), tmp_path)
    made = cli(tmp_path, f"data.dir={test}", "output=test-pack", "data.val_split=0",
               program="alexnet-exp-pack", env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    assert f"evaluate on it with alexnet-exp-eval run_id=<run> data.dir={tmp_path}/test-pack" \
        in made.stdout + made.stderr

    trained = cli(tmp_path, "data=records", f"data.dir={tmp_path / 'pack'}",
                  "data.val_split=0.25", *TINY_MODEL, "trainer.epochs=1", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = json.loads((tmp_path / "outputs" / "run" / "summary.json").read_text())["run_id"]
    client = store(tmp_path)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    manifest = packed.open_pack(tmp_path / "pack")
    assert run.data.tags[DATA_FINGERPRINT_TAG] == packed.fingerprint(
        tmp_path / "pack", manifest).digest
    assert run.data.params["data.name"] == "records"
    report = artifact_text(client, run_id, "data/report.txt")
    assert "packed from" in report and "train 22, val 8" in report

    evaluated = cli(tmp_path, f"run_id={run_id}", f"data.dir={tmp_path / 'test-pack'}",
                    "tta=flip", program="alexnet-exp-eval", env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "(9 images, tta=flip)" in evaluated.stdout
    (eval_run,) = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`alexnet_exp.train_run_id` = '{run_id}'")
    assert eval_run.data.metrics["test_images"] == 9
