"""The real entry points, run as a user runs them, read back from the real MLflow store."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import (
    TINY_MODEL,
    artifact,
    artifact_json,
    artifact_text,
    cli,
    empty_store,
    logged_model,
    make_image_folder,
    runs_of,
    store,
)

from alexnet_exp.paths import CONFIG_DIR, PACKAGE_DIR
from alexnet_exp.tracking import git_tags

FLOWERS_224 = Path(__file__).resolve().parents[2] / "shared" / "data" / "flower_photos_224"
SECRET_URL = "https://alice:s3cr3t-token@example.com/flowers.tgz"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One run of ``python -m alexnet_exp`` (2 epochs, logged model, system metrics) on a folder
    with a stray file and a broken image, with credentials in ``data.url``: the tests below
    read it back."""
    work = tmp_path_factory.mktemp("recorded")
    data = make_image_folder(work / "data", classes={"apple": 12, "kiwi": 12, "plum": 12},
                             size=(48, 40))
    (data / "LICENSE.txt").write_text("not an image")
    (data / "kiwi" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["data=folder", f"data.dir={data}", *TINY_MODEL, "trainer.epochs=2", "norm=lrn",
            f"data.url={SECRET_URL}", "tracking.system_metrics=true",
            "data.cache_max_memory=100KB"]  # 36 images at 72 px take 560 KB: data.cache=auto
    # chooses the disk cache (the other CLI tests' sets fit memory)
    env = {"ALEXNET_EXP_CACHE_DIR": str(work / "cache"), "KERAS_HOME": str(work / "keras"),
           "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    empty_store(work / "mlruns")
    result = cli(work, *args, module=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(store(work))
    return SimpleNamespace(work=work, data=data, args=args, env=env, result=result, run=run)


@pytest.mark.slow
def test_one_training_run_is_recorded_in_mlflow(recorded):
    work, result, run = recorded.work, recorded.result, recorded.run
    assert "best val_accuracy" in result.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{work}/mlruns/mlflow.db" in result.stdout
    assert "broken.jpg" in result.stdout  # the data report lists the skipped file
    assert ("cache: disk (data.cache=auto: 36 images decoded at 72x72 take 559.9 KB, over"
            " data.cache_max_memory 100.0 KB; cached on disk under") in result.stdout
    assert run.data.tags["alexnet_exp.data_cache"] == "disk"
    # the job's own disk cache (a decoded copy of the data) is gone with the job
    assert (work / "outputs" / "run").is_dir()
    assert not (work / "outputs" / "run" / "tfdata-cache").exists()

    client = store(work)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.norm"] == "lrn"
    assert run.data.params["trainer.epochs"] == "2"
    assert run.data.params["data.dir"] == str(recorded.data)
    assert "data.dir" in run.data.tags["overrides"]
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                   "images_per_second"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [1, 2], metric
    summary = json.loads((work / "outputs" / "run" / "summary.json").read_text())
    assert summary["run_id"] == run.info.run_id
    val_acc = [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert summary["best_val_accuracy"] == pytest.approx(max(val_acc))

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in ("config", "plots", "data", "eval", "class_names.json", "model_summary.txt",
                 "preprocessing.json"):
        assert name in artifacts, artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/training_curves.png", "plots/confusion_matrix.png"}
    report = artifact_text(client, run.info.run_id, "data/report.txt")
    assert "broken.jpg" in report and "ignored 1 non-image files" in report
    assert artifact_json(client, run.info.run_id, "class_names.json") == {
        "class_names": ["apple", "kiwi", "plum"]}
    assert (work / "mlruns" / "artifacts").is_dir()  # artifacts live beside the db

    model = logged_model(client, run.info.run_id)
    probs = model.predict(np.full((2, 64, 64, 3), 128, np.float32), verbose=0)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


@pytest.mark.slow
def test_the_run_has_system_metrics_and_the_commit_of_the_code_that_ran(recorded):
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "loss"} <= set(recorded.run.data.metrics)
    commit = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it
    expected = git_tags(PACKAGE_DIR)  # this checkout's commit ({} for an installed wheel)
    assert recorded.run.data.tags.get(commit) == expected.get(commit)


@pytest.mark.slow
def test_same_config_twice_gives_the_same_metrics(recorded, tmp_path):
    """The recorded run's command again, in another folder and store: the same numbers."""
    result = cli(tmp_path, *recorded.args, "tracking.log_model=false", env=recorded.env)
    assert result.returncode == 0, result.stderr[-3000:]
    (second,) = runs_of(store(tmp_path))
    first = recorded.run
    assert first.data.params == {**second.data.params, "tracking.log_model": "True"}
    assert first.data.metrics["loss"] == second.data.metrics["loss"]
    assert first.data.metrics["val_accuracy"] == second.data.metrics["val_accuracy"]


@pytest.mark.slow  # a command that loads TensorFlow and builds the paper's network: ~10 s
def test_dry_run_prints_parameter_count_and_logs_nothing(tmp_path, image_folder):
    data = image_folder(tmp_path / "five", classes={c: 3 for c in "abcde"}, size=(32, 32))
    result = cli(tmp_path, f"data.dir={data}", "dry_run=true", "data.val_split=0.4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "total parameters: 58,301,829" in result.stdout
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_missing_data_folder_is_one_clear_line(tmp_path):
    result = cli(tmp_path, "data=folder", f"data.dir={tmp_path}/nope", *TINY_MODEL)
    assert result.returncode == 2
    assert f"data.dir={tmp_path}/nope does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()  # checked before a store is opened (or made)


def test_unknown_option_gets_hydras_list_of_choices_in_one_line(tmp_path):
    result = cli(tmp_path, "norm=groupnorm")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "alexnet-exp: error: config: norm=groupnorm is not an option of norm:"
        " choose one of bn, lrn, none")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.batch_size=many", "trainer.batch_size=many: Value 'many' of type 'str' could"
                                    " not be converted to Integer"),
        ("trainer.epochs=1.5", "trainer.epochs=1.5: Value '1.5' of type 'float'"),
        ("model.filters=[8,x]", "model.filters=[8,x]: Value 'x' of type 'str'"),
        ("optimizer=rmsprop", "optimizer=rmsprop is not an option of optimizer: choose one of"
                              " adam, adamw, sgd"),
        ("trainer.epoch=3", "trainer.epoch is not a key of the config"),
        ("+trainer.epoch=3", "trainer.epoch is not a key of the config; did you mean"
                             " trainer.epochs?"),
        ("trainer.limit_val_batches=2.5", "trainer.limit_val_batches=2.5 must be a number of"
                                          " batches >= 1"),
        ("model.kernels=[11,5", "cannot parse the command line"),
        ("model.pool=average", "model.pool='average' is not one of overlapping, non_overlapping"),
        ("trainer.threads=0", "trainer.threads='0' must be auto or a whole number >= 1"),
        ("model.dropout_rate=1.5", "model.dropout_rate=1.5 is outside [0.0, 1.0)"),
        ("trainer.batch_size=0", "trainer.batch_size=0 must be >= 1"),
        ("model.input_size=40", "feature map vanishes at"),
        ("data.val_split=1.5", "data.val_split=1.5 is outside (0.0, 1.0)"),
        ("seed=-1", "seed=-1 is outside [0, 2**32)"),
    ],
)
def test_bad_keys_values_and_options_exit_2_with_one_line(tmp_path, override, message):
    result = cli(tmp_path, "data=folder", "data.dir=/nowhere", override)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("alexnet-exp: error: config: ") and message in line
    # refused before any tracking or TF work: no run started, so none is left RUNNING
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (["norm=bn,lnr"], "norm=lnr is not an option of norm: choose one of bn, lrn, none"
                          " (in the sweep norm=bn,lnr)"),
        (["norm=bn,lrn", "trainer.epochs=3,0"], "trainer.epochs=0 must be >= 1"
                                                " (in the sweep trainer.epochs=3,0)"),
        (["experiment=six_ideas", "ablation=bn,nope"], "ablation=nope is not an option of"
                                                       " ablation"),
        (["trainer.epoch=1,2"], "trainer.epoch is not a key of the config"),
        (["seed=1,2", "++trainer.epoch=3"], "trainer.epoch is not a key of the config"),
        (["trainer.epochs=${nope}", "seed=1,2"], "trainer.epochs"),
    ],
)
def test_every_value_of_a_sweep_is_checked_before_its_parent_run_exists(tmp_path, sweep, message):
    result = cli(tmp_path, "-m", "data=folder", "data.dir=/nowhere", *sweep)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("alexnet-exp: error: config: ") and message in line
    assert not (tmp_path / "mlruns").exists()  # no parent run left RUNNING: no store at all


@pytest.mark.parametrize(("flags", "modes"), [
    (["-m", "--cfg", "hydra"], "--multirun and --cfg"),
    (["--info", "-c", "job"], "--cfg and --info"),
    (["--cfg=job", "--multi"], "--multirun and --cfg"),  # argparse takes a prefix, as Hydra
    (["-mc", "job"], "--multirun and --cfg"),
])
def test_two_of_hydras_modes_in_one_command_are_one_line_not_a_traceback(tmp_path, flags,
                                                                          modes):
    """``-m`` with ``--cfg`` (to see a sweep's config) made Hydra raise a ValueError: a
    traceback ending in "Only one of --run, --multirun, --cfg, --info and --shell_completion
    can be specified"."""
    result = cli(tmp_path, "experiment=six_ideas", *flags)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"alexnet-exp: error: {modes} cannot be used together"), line
    assert ("drop -m" in line) == (modes == "--multirun and --cfg")


@pytest.mark.parametrize("program", ["alexnet-exp-eval", "alexnet-exp-report"])
def test_a_tool_given_two_of_hydras_modes_says_so_in_one_line(tmp_path, program):
    result = cli(tmp_path, "--cfg", "job", "--info", program=program)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line == (f"{program}: error: --cfg and --info cannot be used together (Hydra runs"
                    " one mode per command): choose one")


def test_help_with_two_modes_is_still_help(tmp_path):
    """Hydra answers --help before it counts modes: so does the check."""
    helped = cli(tmp_path, "-m", "experiment=six_ideas", "--cfg", "job", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "norm: bn, lrn, none" in helped.stdout


def test_help_lists_groups_and_cfg_prints_the_resolved_config(tmp_path):
    helped = cli(tmp_path, "--help")
    assert helped.returncode == 0
    assert "norm: bn, lrn, none" in helped.stdout
    assert "model: paper, seed, small" in helped.stdout
    printed = cli(tmp_path, "experiment=demo", "--cfg", "job")
    assert printed.returncode == 0
    assert "name: digits" in printed.stdout and "input_size: 64" in printed.stdout


def test_failed_run_is_marked_failed_with_the_error(tmp_path, tiny_data, monkeypatch):
    from omegaconf import OmegaConf

    from alexnet_exp import runner, training
    from alexnet_exp.config import ExperimentConfig

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "fit", explode)
    empty_store(tmp_path / "mlruns")
    cfg = OmegaConf.to_object(OmegaConf.merge(
        OmegaConf.structured(ExperimentConfig),
        {"data": {"name": "folder", "dir": str(tiny_data)},
         "model": OmegaConf.load("conf/model/small.yaml"),
         "trainer": {"epochs": 1, "tensorboard": False}}))
    ctx = runner.JobContext(launch_dir=tmp_path, output_dir=tmp_path / "out")
    with pytest.raises(RuntimeError, match="disk on fire"):
        runner.run(cfg, ctx)
    (run,) = runs_of(store(tmp_path))
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: disk on fire"


@pytest.mark.slow
@pytest.mark.skipif(not FLOWERS_224.is_dir(), reason=f"{FLOWERS_224} is absent")
def test_flowers_224_seed_dry_run_and_short_training(tmp_path):
    client = store(tmp_path)
    dry = cli(tmp_path, "model=seed", "norm=bn", "dropout=off", f"data.dir={FLOWERS_224}",
              "dry_run=true")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "total parameters: 200,127,237" in dry.stdout
    assert "5 classes, 3119 usable images" in dry.stdout
    result = cli(tmp_path, f"data.dir={FLOWERS_224}", *TINY_MODEL, "data.max_images_per_class=30",
                 "trainer.epochs=1", "tracking.log_model=false")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "flowers"


def test_unusable_tracking_store_fails_before_training(tmp_path, tiny_data):
    result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "tracking=server", "tracking.uri=http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "MLflow tracking store http://127.0.0.1:9 is not usable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs" / "run" / "tensorboard").exists()


@pytest.mark.slow
def test_credentials_in_urls_are_never_logged(recorded):
    client, run = store(recorded.work), recorded.run
    assert run.data.params["data.url"] == "https://***@example.com/flowers.tgz"
    logged = [run.info.run_name, *run.data.params.values(), *run.data.tags.values()]
    artifacts = artifact(client, run.info.run_id, "config")
    files = {p.name: p.read_text() for p in artifacts.rglob("*") if p.is_file()}
    assert "***@example.com" in files["resolved.yaml"]
    assert "***@example.com" in files["overrides.yaml"]  # Hydra's own record of the command
    assert not [text for text in [*logged, *files.values()] if "s3cr3t" in text]
    assert "s3cr3t" not in recorded.result.stdout + recorded.result.stderr


def test_a_stop_names_the_killed_run_or_says_nothing_was_recorded():
    """Under tracking=none a stopped job has no MLflow run: the line must not speak of one
    (it said "... before its MLflow run started")."""
    import signal

    from alexnet_exp import cli as entry
    from alexnet_exp import stopping

    ran = stopping.Stopped(signal.SIGTERM, run_id="abc")
    assert entry.killed(ran).endswith("; MLflow run abc is marked KILLED")
    early = stopping.Stopped(signal.SIGTERM)
    assert entry.killed(early).endswith(" before its MLflow run started")
    assert entry.killed(early, tracked=False).endswith(" (tracking=none: nothing was recorded)")
    assert "MLflow" not in entry.killed(early, tracked=False)


def test_every_example_in_the_configs_works_as_typed_in_bash():
    # bash leaves a ~ after `data.dir=` as it is (the run then refuses it): the --help texts
    # and the presets' comments showed data.dir=~/data/flower_photos
    conf = Path(CONFIG_DIR)
    assert (conf / "config.yaml").is_file()
    examples = {path.relative_to(conf): line.strip() for path in conf.rglob("*.yaml")
                for line in path.read_text().splitlines() if "=~/" in line}
    assert examples == {}
