"""The Python API: compose, train, evaluate and predict as a notebook calls them, with the
command line's configs, checks, store and records."""

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import TINY_MODEL, runs_of, store

import alexnet_exp
from alexnet_exp import console
from alexnet_exp.config import ExperimentConfig
from alexnet_exp.errors import ConfigError, UserError


def test_importing_the_package_loads_neither_hydra_nor_tensorflow():
    probe = ("import sys, alexnet_exp; alexnet_exp.compose; "
             "print(sorted(m for m in ('hydra', 'tensorflow', 'keras', 'mlflow')"
             " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_compose_gives_the_checked_config_the_command_line_trains():
    cfg = alexnet_exp.compose(["experiment=demo", "norm=bn", "trainer.epochs=2"])
    assert isinstance(cfg, ExperimentConfig)
    assert (cfg.model.norm, cfg.trainer.epochs, cfg.data.name) == ("bn", 2, "digits")
    with pytest.raises(ConfigError, match="trainer.epochs=0 must be >= 1"):
        alexnet_exp.compose(["trainer.epochs=0"])
    with pytest.raises(UserError, match="Could not find 'norm/nope'.*bn lrn"):
        alexnet_exp.compose(["norm=nope"])
    with pytest.raises(UserError, match="give a list of overrides"):
        alexnet_exp.compose("norm=bn")


@pytest.mark.slow
def test_a_notebook_trains_predicts_and_evaluates_into_the_store_without_tensorflow_noise(
        tmp_path, tiny_data):
    script = textwrap.dedent(f"""
        import json, alexnet_exp
        cfg = alexnet_exp.compose({["data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                                    "trainer.epochs=1"]!r})
        summary = alexnet_exp.train(cfg)
        rows = alexnet_exp.predict([f"run_id={{summary.run_id}}", "images={tiny_data / 'kiwi'}",
                                    "format=json"])
        scored = alexnet_exp.evaluate([f"run_id={{summary.run_id}}", "data.dir={tiny_data}"])
        print("RESULT", json.dumps({{"run": summary.run_id, "out": summary.output_dir,
                                    "rows": len(rows), "accuracy": scored.accuracy}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    for noise in console.START_UP_NOISE:
        assert noise not in done.stderr
    client = store(tmp_path)
    (trained,) = [r for r in runs_of(client) if r.info.run_id == result["run"]]
    assert trained.info.status == "FINISHED"
    assert "best_val_accuracy" in trained.data.metrics
    assert (tmp_path / "outputs").is_dir() and result["out"].startswith(str(tmp_path / "outputs"))
    assert result["rows"] == 12
    assert 0 <= result["accuracy"] <= 1
