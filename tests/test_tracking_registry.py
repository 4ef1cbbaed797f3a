"""Logged models named for what they are, and the Model Registry as MLflow users use it: a
sweep registers its best trial under ``tracking.register_as`` with the ``champion`` alias, and
``models:/<name>@champion`` is what ``alexnet-exp-eval`` evaluates."""

import pytest
from helpers import TINY_MODEL, cli, run_model_uri, runs_of, store

SWEEP = ["-m", "data=folder", *TINY_MODEL, "trainer.epochs=1", "tracking.register_as=fruit",
         "seed=1,2"]


@pytest.mark.slow
def test_a_sweep_registers_its_best_trial_as_champion_and_eval_loads_it(tmp_path, tiny_data):
    client = store(tmp_path)
    result = cli(tmp_path, *SWEEP, f"data.dir={tiny_data}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered as fruit version 1: models:/fruit@champion" in result.stdout
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("alexnet_exp.kind") == "sweep"]
    children = [r for r in runs if r is not parent]
    best = client.get_run(parent.info.run_id).data.tags["best_run_id"]
    # every job's model is named after its run (its seed), not "model"
    for run in children:
        name = run_model_uri(client, run.info.run_id).rsplit("/", 1)[1]
        assert name.endswith(f"seed-{run.data.params['seed']}"), name
    versions = client.search_model_versions("name = 'fruit'")
    assert [(int(v.version), v.run_id) for v in versions] == [(1, best)]  # the winner only
    assert client.get_model_version_by_alias("fruit", "champion").run_id == best

    evaluated = cli(tmp_path, "model_uri=models:/fruit@champion", f"data.dir={tiny_data}",
                    "tta=none", program="alexnet-exp-eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (evaluation,) = [r for r in runs_of(client)
                     if r.data.tags.get("alexnet_exp.kind") == "evaluation"]
    assert evaluation.data.tags["alexnet_exp.train_run_id"] == best
    assert evaluation.data.tags["model_source"] == "models:/fruit@champion"

    again = cli(tmp_path, *SWEEP, f"data.dir={tiny_data}")  # every job skipped: same winner
    assert again.returncode == 0, again.stderr[-3000:]
    assert [int(v.version) for v in client.search_model_versions("name = 'fruit'")] == [1]

    single = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "trainer.epochs=1", "tracking.register_as=fruit", "seed=3")
    assert single.returncode == 0, single.stderr[-3000:]
    versions = {int(v.version): v.run_id
                for v in client.search_model_versions("name = 'fruit'")}
    assert sorted(versions) == [1, 2]  # a single run registers a new version
    assert versions[2] not in {r.info.run_id for r in children}
    assert int(client.get_model_version_by_alias("fruit", "champion").version) == 1


@pytest.mark.slow
def test_a_bad_registry_name_is_one_line_before_anything_trains(tmp_path, tiny_data):
    result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "tracking.register_as=team/fruit")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "alexnet-exp: error: config: tracking.register_as='team/fruit' is not a Model Registry")
    assert not (tmp_path / "mlruns").exists() or not runs_of(store(tmp_path))
