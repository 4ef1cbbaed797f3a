"""``alexnet-exp-report`` on a real SQLite MLflow store: numbers checked against a hand
computation, the report logged where it belongs and never read back as a training run."""

import csv
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import TINY_MODEL, artifact_text, cli, store
from mlflow.entities import Metric, Param
from PIL import Image

from alexnet_exp import report_plots
from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import ConfigError, UserError
from alexnet_exp.keys import DATA_ROOT_TAG
from alexnet_exp.report import run_report
from alexnet_exp.report_groups import make_groups
from alexnet_exp.tool_config import ReportConfig
from alexnet_exp.tracking import TrainingRun

EXPERIMENT = "six_ideas"
# variant -> per-seed val_accuracy histories (one run stops early after 3 epochs)
HISTORIES = {
    "baseline": [[0.40, 0.55, 0.61, 0.66], [0.42, 0.50, 0.64, 0.63], [0.38, 0.52, 0.60, 0.70]],
    "tanh": [[0.30, 0.41, 0.47, 0.52], [0.33, 0.45, 0.51], [0.29, 0.40, 0.49, 0.50]],
    "bn": [[0.50, 0.62, 0.71, 0.74], [0.52, 0.66, 0.70, 0.73], [0.47, 0.61, 0.69, 0.76]],
    "grouped": [[0.41, 0.53, 0.60, 0.62]],  # a single run: no std
}
PARAMETERS = {"baseline": 801637, "tanh": 801637, "bn": 802325, "grouped": 623000,
              "no_dropout": 801637}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def log_training_run(client, experiment_id, parent_id, variant, seed, accuracies,
                     status="FINISHED", data_dir="/data/flowers"):
    """A child run shaped like the runner's: flattened params, per-epoch and summary metrics."""
    run = client.create_run(experiment_id, run_name=f"variant={variant},seed={seed}",
                            tags={"mlflow.parentRunId": parent_id, DATA_ROOT_TAG: "/data/flowers",
                                  "alexnet_exp.config_hash": f"{variant}-{seed}"})
    run_id = run.info.run_id
    params = {"variant": variant, "seed": seed, "model.activation": "tanh" if variant == "tanh"
              else "relu", "model.norm": "bn" if variant == "bn" else "lrn", "data.dir": data_dir,
              "tracking.run_name": f"job-{variant}-{seed}", "trainer.epochs": 4}
    losses = [round(2.0 - 2 * a + 0.01 * seed, 4) for a in accuracies]
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, epoch) for epoch, (acc, loss) in
               enumerate(zip(accuracies, losses, strict=True), start=1)
               for name, value in (("val_accuracy", acc), ("val_loss", loss))]
    summary = {"best_val_accuracy": max(accuracies), "best_epoch": accuracies.index(
        max(accuracies)) + 1, "final_val_accuracy": accuracies[-1], "epochs_run": len(accuracies),
               "train_seconds": 10.0 * len(accuracies) + seed, "parameters": PARAMETERS[variant],
               "best_val_loss": min(losses)}
    metrics += [Metric(k, float(v), now, 0) for k, v in summary.items()]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status)
    return run_id, losses, summary


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A six_ideas-like experiment: a sweep parent with 10 FINISHED children and one FAILED,
    an evaluation run, and a second sweep (one child) in the same experiment."""
    work = tmp_path_factory.mktemp("report_store")
    client = store(work)
    artifacts = (work / "mlruns" / "artifacts" / EXPERIMENT).as_uri()
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts)
    other_id = client.create_experiment("other", artifact_location=artifacts + "-other")
    parent = client.create_run(experiment_id, run_name="sweep experiment=six_ideas",
                               tags={"alexnet_exp.kind": "sweep"}).info.run_id
    runs = {}
    for variant, histories in HISTORIES.items():
        for seed, history in enumerate(histories):
            # data.dir spelt two ways for one folder: the same data, so the same group
            spelling = "~/flowers" if seed % 2 else "/data/flowers"
            runs.setdefault(variant, []).append(log_training_run(
                client, experiment_id, parent, variant, seed, history, data_dir=spelling))
    log_training_run(client, experiment_id, parent, "bn", 9, [0.1, 0.2], status="FAILED")
    client.set_terminated(parent, "FINISHED")
    client.create_run(experiment_id, run_name="eval", tags={"alexnet_exp.kind": "evaluation"})
    second = client.create_run(experiment_id, run_name="sweep 2",
                               tags={"alexnet_exp.kind": "sweep"}).info.run_id
    log_training_run(client, experiment_id, second, "no_dropout", 0, [0.3, 0.35, 0.37, 0.4])
    empty = client.create_experiment("empty", artifact_location=artifacts + "-empty")
    client.create_run(empty, run_name="sweep", tags={"alexnet_exp.kind": "sweep"})
    log_training_run(client, empty, "0" * 32, "baseline", 0, [0.1], status="KILLED")
    foreign = client.create_run(other_id, run_name="sweep elsewhere").info.run_id
    return SimpleNamespace(work=work, client=client, parent=parent, runs=runs, second=second,
                           experiment_id=experiment_id, foreign=foreign)


def report(study, out: str, **kwargs):
    cfg = ReportConfig(experiment_name=kwargs.pop("experiment_name", EXPERIMENT),
                       output_dir=out, **kwargs)
    return run_report(cfg, study.work)


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["group"]: row for row in csv.DictReader(handle)}


def mean_std(values):
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def test_sweep_report_numbers_equal_a_hand_computation(study, capsys):
    result = report(study, "out/sweep", parent_run_id=study.parent)
    assert result.keys == ["variant"]
    rows = read_csv(result.output_dir / "report.csv")
    assert list(rows) == ["baseline", "bn", "grouped", "tanh"]  # baseline, then best first
    for variant, runs in study.runs.items():
        row = rows[variant]
        assert int(row["n"]) == len(HISTORIES[variant])
        columns = {"best_val_accuracy": [s["best_val_accuracy"] for _, _, s in runs],
                   "best_val_loss": [min(losses) for _, losses, _ in runs],
                   "epochs_run": [len(h) for h in HISTORIES[variant]],
                   "train_seconds": [s["train_seconds"] for _, _, s in runs],
                   "parameters": [PARAMETERS[variant]] * len(runs)}
        for column, values in columns.items():
            mean, std = mean_std(values)
            assert float(row[f"{column}_mean"]) == pytest.approx(mean), (variant, column)
            if std is None:
                assert row[f"{column}_std"] == ""
            else:
                assert float(row[f"{column}_std"]) == pytest.approx(std), (variant, column)
        assert set(row["run_ids"].split()) == {run_id for run_id, _, _ in runs}

    markdown = (result.output_dir / "report.md").read_text()
    base_mean, base_std = mean_std([max(h) for h in HISTORIES["baseline"]])
    assert f"| baseline | 3 | {100 * base_mean:.2f} ± {100 * base_std:.2f} |" in markdown
    assert "| grouped | 1 | 62.00 ± – |" in markdown
    assert "801,637 |" in markdown and "801,637 ±" not in markdown  # a constant shown once
    assert "Left out: 1 FAILED run (not FINISHED)." in markdown
    assert capsys.readouterr().out.count("| baseline | 3 |") == 1  # the table is printed too


def test_effect_vs_baseline_is_the_difference_of_means_with_welch_se(study):
    result = report(study, "out/effects", parent_run_id=study.parent, log=False)
    rows = read_csv(result.output_dir / "report.csv")
    base = [max(h) for h in HISTORIES["baseline"]]
    tanh = [max(h) for h in HISTORIES["tanh"]]
    diff = np.mean(tanh) - np.mean(base)
    se = math.sqrt(np.var(tanh, ddof=1) / 3 + np.var(base, ddof=1) / 3)
    assert float(rows["tanh"]["effect_vs_baseline"]) == pytest.approx(diff)
    assert float(rows["tanh"]["effect_se"]) == pytest.approx(se)
    assert rows["baseline"]["effect_vs_baseline"] == ""
    assert float(rows["grouped"]["effect_vs_baseline"]) == pytest.approx(0.62 - np.mean(base))
    assert rows["grouped"]["effect_se"] == ""  # one run: no spread to speak of
    markdown = (result.output_dir / "report.md").read_text()
    assert "## Effect vs baseline (baseline, n=3)" in markdown
    assert f"| tanh | 3 | {100 * diff:.2f} | {100 * se:.2f} | {diff / se:.1f} |" in markdown


def test_plots_are_valid_pngs_and_everything_is_logged_to_the_parent(study):
    result = report(study, "out/logged", parent_run_id=study.parent)
    assert result.run_id == study.parent
    names = {p.name for p in result.files}
    assert names == {"report.md", "report.csv", "val_accuracy_curves.png",
                     "best_val_accuracy_by_group.png"}
    for path in result.files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG" and min(image.size) > 100
    logged = {a.path for a in study.client.list_artifacts(study.parent, "report")}
    assert logged == {f"report/{n}" for n in names}
    # Inline images: beside report.md on disk; in the run, where MLflow's UI serves them (its
    # Markdown preview draws only absolute image URLs; a local store's UI is `make ui`'s).
    local = (result.output_dir / "report.md").read_text()
    text = artifact_text(study.client, study.parent, "report/report.md")
    for png in ("val_accuracy_curves.png", "best_val_accuracy_by_group.png"):
        assert f"![{png}]({png})" in local
        assert (f"![{png}](http://127.0.0.1:5000/get-artifact?path=report%2F{png}"
                f"&run_uuid={study.parent})" in text)
    assert text.split("![")[0] == local.split("![")[0]  # the same tables


def test_experiment_report_logs_a_report_run_that_a_later_report_ignores(study):
    first = report(study, "out/first")
    assert first.run_id != study.parent
    report_run = study.client.get_run(first.run_id)
    assert report_run.data.tags["alexnet_exp.kind"] == "report"
    assert report_run.info.run_name == "report" and report_run.info.status == "FINISHED"
    # the whole experiment: the second sweep's child joins as its own group
    assert [g.label for g in first.groups] == ["baseline", "bn", "grouped", "tanh", "no_dropout"]
    second = report(study, "out/second")
    counted = {r.run_id for g in second.groups for r in g.runs}
    assert first.run_id not in counted and second.run_id not in counted
    assert len(counted) == 11  # 10 children of the first sweep + 1 of the second
    assert read_csv(first.output_dir / "report.csv") == read_csv(second.output_dir / "report.csv")


def test_default_output_dir_is_under_reports_in_the_launch_dir(study):
    result = run_report(ReportConfig(experiment_name=EXPERIMENT, parent_run_id=study.parent,
                                     log=False), study.work)
    assert result.output_dir == study.work / "reports" / f"{EXPERIMENT}-{study.parent[:8]}"
    assert (result.output_dir / "report.md").is_file()


def test_without_a_variant_the_differing_params_group_and_name_the_rows(study):
    """Runs of a plain sweep (no variant label): grouped by the params that differ, not by
    seed, data.dir spelling or tracking.*; any label can be the baseline."""
    runs = [study.client.get_run(run_id) for v in ("baseline", "tanh", "bn")
            for run_id, _, _ in study.runs[v]]
    plain = [TrainingRun(r.info.run_id, r.info.run_name,
                         {k: v for k, v in r.data.params.items() if k != "variant"},
                         r.data.metrics, r.data.tags) for r in runs]
    baseline = "model.activation=relu, model.norm=lrn"
    groups, keys = make_groups(plain, "best_val_accuracy", baseline)
    assert keys == ["model.activation", "model.norm"]
    assert [g.label for g in groups] == [baseline, "model.activation=relu, model.norm=bn",
                                         "model.activation=tanh, model.norm=lrn"]
    assert [len(g.runs) for g in groups] == [3, 3, 3]
    assert groups[2].effect == pytest.approx(np.mean([max(h) for h in HISTORIES["tanh"]])
                                             - np.mean([max(h) for h in HISTORIES["baseline"]]))


def test_single_runs_everywhere_still_give_a_report(study, tmp_path):
    """n=1 in every group: std and SE are "–", the plots still draw (no error bars)."""
    one = [TrainingRun(f"r{i}", f"r{i}", {"variant": v}, {"best_val_accuracy": a},
                       {}, {"val_accuracy": [a]}) for i, (v, a) in
           enumerate([("baseline", 0.5), ("bn", 0.6)])]
    groups, _ = make_groups(one, "best_val_accuracy", "baseline")
    assert (groups[1].effect, groups[1].effect_se) == (pytest.approx(0.1), None)
    paths = report_plots.write_plots(tmp_path, groups, "best_val_accuracy", 100.0)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"experiment_name": "nope"}, "experiment_name=nope: no such experiment"),
    ({"parent_run_id": "f" * 32}, f"parent_run_id={'f' * 32}: no such run"),
    ({"experiment_name": "empty"}, "experiment 'empty' has no FINISHED training runs (1 KILLED)"),
    ({"metric": "best_val_acc"}, "metric=best_val_acc: no run logged it"),
])
def test_what_cannot_be_reported_is_one_clear_line(study, tmp_path, kwargs, message):
    with pytest.raises(UserError) as caught:
        report(study, str(tmp_path / "out"), **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_parent_of_another_experiment_and_missing_store_and_name(study, tmp_path):
    with pytest.raises(UserError, match="belongs to experiment 'other'.*experiment_name=other"):
        report(study, str(tmp_path / "out"), parent_run_id=study.foreign)
    with pytest.raises(UserError, match="has no FINISHED training runs"):
        report(study, str(tmp_path / "out"), parent_run_id=study.client.create_run(
            study.experiment_id, tags={"alexnet_exp.kind": "sweep"}).info.run_id)
    with pytest.raises(UserError, match="no MLflow store"):
        run_report(ReportConfig(experiment_name=EXPERIMENT), tmp_path)
    with pytest.raises(ConfigError, match="experiment_name or parent_run_id is required"):
        run_report(ReportConfig(tracking=TrackingConfig()), tmp_path)


def test_parent_run_id_alone_reports_its_sweep_in_its_experiment(study, tmp_path):
    result = run_report(ReportConfig(parent_run_id=study.parent, log=False,
                                     output_dir=str(tmp_path / "out")), study.work)
    assert sum(len(g.runs) for g in result.groups) == 10
    assert result.markdown.startswith(f"# Report: experiment {EXPERIMENT}, sweep {study.parent}")
    with pytest.raises(UserError, match=f"parent_run_id={'f' * 32}: no such run"):
        run_report(ReportConfig(parent_run_id="f" * 32), study.work)


def test_by_group_axis_fits_the_values_so_close_groups_look_different():
    """98.3 % against 97.5 %: on an axis from 0 the two would look the same."""
    figure = report_plots.by_group_figure(["a", "b"], [0.983, 0.975], [None, 0.002],
                                          "best_val_accuracy", scale=100.0)
    low, high = figure.axes[0].get_ylim()
    report_plots.plt.close(figure)
    assert 96.0 < low < 97.3 and 98.3 < high < 99.5
    assert (98.3 - 97.5) / (high - low) > 0.4  # the gap fills much of the plot's height
    figure = report_plots.by_group_figure(["a"], [0.5], [None], "x")
    low, high = figure.axes[0].get_ylim()
    report_plots.plt.close(figure)
    assert low < 0.5 < high  # a single value still gets a range


@pytest.mark.slow
def test_report_cli_after_a_real_sweep_matches_search_runs(tmp_path, tiny_data):
    client = store(tmp_path)
    sweep = cli(tmp_path, "-m", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                "trainer.epochs=2", "tracking.log_model=false", "seed=1,2", "norm=lrn,none")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    result = cli(tmp_path, "experiment_name=alexnet-exp", program="alexnet-exp-report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| group | n | best_val_accuracy (%)" in result.stdout
    assert "logged to MLflow run" in result.stdout

    experiment_id = client.get_experiment_by_name("alexnet-exp").experiment_id
    finished = client.search_runs([experiment_id], "attributes.status = 'FINISHED'")
    training = [r for r in finished if "alexnet_exp.kind" not in r.data.tags]
    assert len(training) == 4
    rows = read_csv(tmp_path / "reports" / "alexnet-exp" / "report.csv")
    assert set(rows) == {"model.norm=lrn", "model.norm=none"}
    by_norm: dict[str, list] = {}
    for run in training:
        by_norm.setdefault(run.data.params["model.norm"], []).append(run)
    for norm, runs in by_norm.items():
        row = rows[f"model.norm={norm}"]
        assert row["n"] == "2"
        for column in ("best_val_accuracy", "train_seconds", "epochs_run", "parameters"):
            values = np.array([r.data.metrics[column] for r in runs], float)
            assert float(row[f"{column}_mean"]) == pytest.approx(values.mean()), column
            assert float(row[f"{column}_std"]) == pytest.approx(values.std(ddof=1)), column
        losses = [min(m.value for m in client.get_metric_history(r.info.run_id, "val_loss"))
                  for r in runs]
        assert float(row["best_val_loss_mean"]) == pytest.approx(np.mean(losses))
    markdown = (tmp_path / "reports" / "alexnet-exp" / "report.md").read_text()
    assert "grouped by model.norm; seeds pooled" in markdown

    again = cli(tmp_path, "experiment_name=alexnet-exp", "log=false",
                "output_dir=second", program="alexnet-exp-report")
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_csv(tmp_path / "second" / "report.csv") == rows  # the report run is not counted

    bad = cli(tmp_path, "experiment_name=typo", program="alexnet-exp-report")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "alexnet-exp-report: error: experiment_name=typo: no such experiment in"
        f" sqlite:///{tmp_path}/mlruns/mlflow.db (it has: Default, alexnet-exp)"]
