"""The data a run trains on is the data it shows and records (issue 13, sections 5 and 6):
the real CLI as a subprocess on tiny real image folders, read back from the real store."""

import os
import re
import unicodedata

import pytest
from helpers import (
    TINY_MODEL,
    artifact_json,
    artifact_text,
    cli,
    epochs_logged,
    make_image_folder,
    rewrite_keeping_stamps,
    runs_of,
    store,
    wait_for,
)

QUIET = [arg for arg in TINY_MODEL if not arg.startswith("trainer.verbose")]


@pytest.mark.slow
def test_a_normal_run_shows_its_steps_and_nfd_class_names_evaluate_against_nfc(tmp_path):
    """The progress bar counts the real steps, Keras never says it ran out of data, and a class
    folder a Mac wrote in NFD is the class a Linux test folder names in NFC."""
    nfd, nfc = unicodedata.normalize("NFD", "Café"), unicodedata.normalize("NFC", "Café")
    data = make_image_folder(tmp_path / "data", classes={nfd: 12, "Tee": 12, "Wasser": 12},
                             size=(48, 40))
    test = make_image_folder(tmp_path / "test", classes={nfc: 3, "Tee": 3, "Wasser": 3},
                             size=(48, 40), seed=7)
    client = store(tmp_path)
    result = cli(tmp_path, "data=folder", f"data.dir={data}", *QUIET, "trainer.verbose=1",
                 "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "ran out of data" not in output
    assert "Unknown" not in output
    train_size = int(re.search(r"\(train (\d+), val \d+\)", result.stdout).group(1))
    steps = -(-train_size // 8)  # trainer.batch_size=8
    assert f"{steps}/{steps}" in result.stdout

    (run,) = runs_of(client)
    names = artifact_json(client, run.info.run_id, "class_names.json")
    assert names == {"class_names": [nfc, "Tee", "Wasser"]}
    evaluated = cli(tmp_path, f"run_id={run.info.run_id}", f"data.dir={test}", "log=false",
                    program="alexnet-exp-eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "(9 images, tta=none)" in evaluated.stdout
    assert "no folder for class" not in evaluated.stderr


@pytest.mark.slow
def test_an_image_rewritten_with_its_old_size_and_mtime_is_named_not_a_traceback(
        tmp_path, tiny_data, alexnet_cache):
    """rsync --times / a restore from backup: same size, same mtime, new (corrupt) bytes. The
    check cache filled by the first run must not vouch for it in the second."""
    args = ["data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=1",
            "tracking.log_model=false"]
    client = store(tmp_path)
    first = cli(tmp_path, *args, "dry_run=true")  # checks every image: fills the cache
    assert first.returncode == 0, first.stderr[-3000:]
    assert any(path.is_file() for path in alexnet_cache.rglob("*"))
    target = tiny_data / "kiwi" / "kiwi_003.jpg"
    rewrite_keeping_stamps(target, b"garbage " * 2000)

    second = cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    assert f"{target}: not an image" in second.stdout
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED"
    report = artifact_text(client, run.info.run_id, "data/report.txt")
    assert f"{target}: not an image" in report
    assert "skipped 1 unreadable images" in report


def test_a_class_too_small_to_split_is_named_by_its_folder_before_tensorflow_loads(tmp_path):
    data = make_image_folder(tmp_path / "data", classes={"apple": 6, "kiwi": 1, "plum": 6})
    result = cli(tmp_path, "data=folder", f"data.dir={data}", *TINY_MODEL, "trainer.epochs=1",
                 env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "[1]" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("alexnet-exp:")]
    assert "class folder(s) kiwi (1 image) need at least 2" in line
    assert not any(line.startswith("import time:") and line.endswith("| tensorflow")
                   for line in result.stderr.splitlines())
    client = store(tmp_path)  # no MLflow run was started for it
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])



@pytest.mark.slow
def test_images_that_stop_decoding_during_a_run_are_dropped_and_named(tmp_path, tiny_data):
    """Rewritten mid-run (after the check, while epochs read the files: data.cache=none), a
    file in each split is dropped, not a traceback; the run FINISHES and names them."""
    import subprocess
    import sys
    from pathlib import Path

    client = store(tmp_path)
    env = dict(os.environ)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("alexnet-exp")), "data=folder",
         f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=15", "data.cache=none",
         "tracking.log_model=false", f"hydra.run.dir={tmp_path}/outputs/run"],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: epochs_logged(client) >= 1, 300, "epoch 1 in the store")
        (run,) = runs_of(client)
        broken = [tiny_data / "apple" / "apple_004.jpg", tiny_data / "plum" / "plum_009.jpg"]
        for path in broken:
            rewrite_keeping_stamps(path, b"garbage " * 2000)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    for path in broken:
        assert f"alexnet-exp: {path} stopped decoding during the run" in stdout
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["alexnet_exp.dropped_images"] == "2"
    report = artifact_text(client, run.info.run_id, "data/report.txt")
    assert "2 images stopped decoding during the run" in report
    assert all(f"{path}: not an image" in report for path in broken)
