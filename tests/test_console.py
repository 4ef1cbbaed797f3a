"""What a person and a log file see: the library's logger on the console, TensorFlow's start-up
lines held back, one line per epoch into a file, and the job's own log file."""

import logging
import os
import subprocess
import sys
import time

import pytest
from helpers import TINY_MODEL, cli

from alexnet_exp import console
from alexnet_exp.fit_callbacks import EpochReporter

QUIET_TINY = [arg for arg in TINY_MODEL if not arg.startswith("trainer.verbose")]


def _reporter_epoch(reporter: EpochReporter) -> None:
    """One epoch's end as fit calls it (no training: the callback's own clock and rate)."""
    reporter.started, reporter.lr = time.perf_counter(), 0.01
    reporter.on_epoch_end(0, {"accuracy": 0.5, "loss": 1.25, "val_accuracy": 0.75,
                              "val_loss": 0.5})


def test_library_lines_are_bare_info_on_stdout_warnings_on_stderr(capsys):
    logging.getLogger("alexnet_exp.prepare").info("alexnet-exp: skipping job")
    logging.getLogger("alexnet_exp.tracking.delivery").warning("alexnet-exp: warning: away")
    captured = capsys.readouterr()
    assert captured.out == "alexnet-exp: skipping job\n"
    assert captured.err == "alexnet-exp: warning: away\n"


def test_a_notebook_quiets_the_library_with_its_logger(capsys):
    _reporter_epoch(EpochReporter(100, None))
    assert capsys.readouterr().out.startswith("Epoch 1/? - ")
    library = logging.getLogger("alexnet_exp")
    level = library.level
    library.setLevel(logging.WARNING)
    try:
        _reporter_epoch(EpochReporter(100, None))
        logging.getLogger("alexnet_exp.sweep").warning("alexnet-exp: still shown")
    finally:
        library.setLevel(level)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "alexnet-exp: still shown\n"


def test_an_epoch_line_kept_off_the_console_still_reaches_other_handlers(capsys, tmp_path):
    file = logging.FileHandler(tmp_path / "job.log")
    library = logging.getLogger("alexnet_exp")
    library.addHandler(file)
    try:
        _reporter_epoch(EpochReporter(100, None, show=False))  # Keras draws the live bar
    finally:
        library.removeHandler(file)
        file.close()
    assert capsys.readouterr().out == ""
    assert "Epoch 1/? - " in (tmp_path / "job.log").read_text()


def test_start_up_noise_on_fd_2_is_held_back_and_the_rest_kept(capfd):
    with console.held_back_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_start_up_lines_come_back_when_asked_for(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert not console.quiet_start_up()
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert console.quiet_start_up()


@pytest.mark.slow
def test_a_run_into_a_file_is_one_line_per_epoch_quiet_and_logged(tmp_path, tiny_data):
    result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *QUIET_TINY,
                 "trainer.epochs=2", "tracking.log_model=false")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "\b" not in out and "\r" not in out  # no progress bar redrawn into the file
    epochs = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert "val_accuracy: " in epochs[1]
    for noise in console.START_UP_NOISE:
        assert noise not in result.stderr
    assert "database tables" not in result.stderr  # MLflow creating the new store says so
    job = tmp_path / "outputs" / "run"
    assert f"job folder {job}  (log alexnet-exp.log; TensorBoard: tensorboard --logdir {job})" \
        in out
    log = (job / "alexnet-exp.log").read_text()
    assert "[alexnet_exp.fit_callbacks][INFO] - Epoch 2/2 - " in log
    assert "[alexnet_exp.cli][INFO] - alexnet-exp: 2 epochs in" in log
    assert "best val_accuracy" in log and "usable images" in log  # summary, data report
    assert not (job / "cli.log").exists()


@pytest.mark.slow
def test_a_sweep_shows_its_unchanged_data_report_once(tmp_path, tiny_data):
    result = cli(tmp_path, "-m", "data=folder", f"data.dir={tiny_data}", *QUIET_TINY,
                 "trainer.epochs=1", "tracking.log_model=false", "norm=bn,lrn")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("usable images (train") == 1
    assert f"data: {tiny_data} as an earlier job of this sweep reported it" in result.stdout
    (second,) = tmp_path.glob("multirun/1/alexnet-exp.log")
    assert "usable images (train" in second.read_text()  # its log file keeps the whole report
    assert "database tables" not in result.stderr


def test_a_job_that_fails_keeps_its_one_error_line_in_its_log_file_too(tmp_path):
    """The entry points' error line is logged: on stderr as one bare line, and in the job's
    alexnet-exp.log, which is where a sweep's failed job is read afterwards."""
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "only.jpg").write_bytes(b"not a photo")
    result = cli(tmp_path, "data=folder", f"data.dir={tmp_path / 'data'}")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("alexnet-exp: error: cannot split into train/val")
    log = (tmp_path / "outputs" / "run" / "alexnet-exp.log").read_text()
    assert f"[alexnet_exp.errors][ERROR] - {line}" in log


def test_the_collector_is_paused_for_the_block_and_restored_after_it_even_on_an_error():
    import gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError), console.collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("an import that fails")
    assert gc.isenabled()
    gc.disable()  # a caller that turned it off itself keeps it off
    try:
        with console.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


NEW_MODELS_PREDICT = """
import logging, sys
logging.basicConfig(stream=sys.stdout)
import alexnet_exp.console
if sys.argv[1] == "unfiltered":
    logging.getLogger("tensorflow").filters.clear()
import keras, numpy as np, tensorflow as tf
images = np.zeros((4, 8), np.float32)
for job in range(6):  # a sweep's jobs in one process: a new model each
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.predict(images, verbose=0)
ours = tf.function(lambda x: x + 1)
for n in range(1, 8):  # a retracing of our own: still told
    ours(tf.zeros([n]))
"""


@pytest.mark.parametrize("filtered", [True, False])
def test_each_new_models_first_trace_is_not_called_retracing(tmp_path, filtered):
    """TensorFlow counts traces by a function's code, so a sweep's jobs in one process made
    it warn of Keras's predict step retracing from the third job on; our own functions'
    retracing still warns (and without the filter the Keras warning is there: the test can
    fail)."""
    script = tmp_path / "jobs.py"
    script.write_text(NEW_MODELS_PREDICT)
    done = subprocess.run([sys.executable, str(script), "filtered" if filtered else "unfiltered"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    warned = [line for line in (done.stdout + done.stderr).splitlines()
              if "triggered tf.function retracing" in line]
    keras_steps = [line for line in warned if "make_predict_function" in line]
    assert bool(keras_steps) is not filtered, warned
    assert any("<lambda>" in line for line in warned), warned


def test_the_log_filter_redacts_a_uri_given_as_an_argument_or_in_the_message():
    record = logging.LogRecord("mlflow", logging.INFO, __file__, 1, "store %s", ("http://a:pw@h",),
                               None)
    assert console.RedactSecrets().filter(record)
    assert record.getMessage() == "store http://***@h"
