"""A run's logged model by its name, and the Model Registry: a sweep's winner registered under
``tracking.register_as`` with the ``champion`` alias on it, so ``models:/<name>@champion`` is
the model to evaluate or serve. (A single run registers its model as it logs it:
:func:`.records.log_tf_model`.)
"""

from mlflow.exceptions import MlflowException

from alexnet_exp.errors import UserError
from alexnet_exp.tracking.store import Store

CHAMPION = "champion"  # the alias a sweep points at its best trial's version
OLD_NAME = "model"  # what every run's model was called before models were named


def run_model_uri(store: Store, run_id: str) -> str:
    """``runs:/<run id>/<name>`` of the run's (newest) logged model; a run from before models
    had names, or with none, gets the old ``runs:/<run id>/model``."""
    model = _run_model(store, run_id)
    return f"runs:/{run_id}/{model.name if model else OLD_NAME}"


def _run_model(store: Store, run_id: str):
    experiment_id = store.client.get_run(run_id).info.experiment_id
    models = store.client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1)
    return models[0] if models else None


def register_champion(store: Store, name: str, run_id: str, alias: str = CHAMPION) -> int:
    """Register the logged model of ``run_id`` as a version of ``name`` (the version it has
    already, when the same sweep is run again and the same run wins) and point ``alias`` at
    it. Returns the version number."""
    model = _run_model(store, run_id)
    if model is None:
        raise UserError(f"run {run_id} logged no model (tracking.log_model=false?): nothing to"
                        f" register as {name}")
    client = store.client
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model.model_id}"
    same = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == source]
    if same:
        version = same[0]
    else:
        with store.fluent():  # the registry resolves a models:/ source with the global URI
            version = client.create_model_version(name, source=source, run_id=run_id,
                                                  model_id=model.model_id)
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)
