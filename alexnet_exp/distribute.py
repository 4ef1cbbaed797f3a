"""Which tf.distribute strategy a job trains under, and which of its processes is the chief.

Every worker of a ``multi_worker`` job runs the same steps (TensorFlow's collectives need all
of them, saves and predictions included), but only the chief's copy matters: it logs to
MLflow and keeps checkpoints, the others record nothing and write to a temporary folder.

:func:`placement` reads ``TF_CONFIG`` without TensorFlow, so a malformed cluster spec is one
line before anything heavy loads.
"""

import json
import math
import os
from dataclasses import dataclass

from alexnet_exp.config import DistributeConfig
from alexnet_exp.errors import ConfigError

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:2222", "host2:2222"]},'
                     ' "task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class Placement:
    chief: bool = True
    task: str = "chief"  # "worker:1" as TF_CONFIG names it
    workers: int = 1
    # this process's input pipeline among the workers' (tf.distribute's input_pipeline_id:
    # the chief first, then the workers in order)
    index: int = 0


def placement(cfg: DistributeConfig, environ: dict | None = None) -> Placement:
    """This process's role; the chief is the ``chief`` task, else worker 0 (TF's convention)."""
    environ = os.environ if environ is None else environ
    if cfg.strategy != "multi_worker":
        return Placement()
    hint = f"set it on each worker, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'"
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(f"distribute=multi_worker needs the TF_CONFIG environment variable:"
                          f" {hint}")
    try:
        spec = json.loads(raw)
        cluster, kind = spec["cluster"], spec["task"]["type"]
        index = int(spec["task"].get("index", 0))
        members = {name: list(addresses) for name, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a cluster spec ({type(exc).__name__}: {exc}):"
                          f" {hint}") from None
    if not 0 <= index < len(members.get(kind, [])):
        raise ConfigError(f"TF_CONFIG task {kind}:{index} is not in its cluster"
                          f" ({', '.join(f'{k}: {len(v)}' for k, v in members.items())})")
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in members)
    workers = len(members.get("chief", [])) + len(members.get("worker", []))
    pipeline = 0 if kind == "chief" else index + len(members.get("chief", []))
    return Placement(chief, f"{kind}:{index}", workers, pipeline)


def make_strategy(cfg: DistributeConfig):
    """The tf.distribute strategy; created before any model, as MultiWorkerMirrored requires."""
    import tensorflow as tf

    if cfg.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=cfg.devices or None)
    if cfg.strategy == "multi_worker":
        kinds = tf.distribute.experimental.CommunicationImplementation
        implementation = {"auto": kinds.AUTO, "ring": kinds.RING, "nccl": kinds.NCCL}
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation[cfg.communication]))
        _mend_keras_multi_worker_reduce()
        return strategy
    return tf.distribute.get_strategy()


def global_batch_size(cfg: DistributeConfig, batch_size: int, replicas: int) -> int:
    """The batch one optimizer step sees, summed over replicas."""
    if cfg.batch_size == "per_replica":
        return batch_size * replicas
    if batch_size % replicas:
        raise ConfigError(f"trainer.batch_size={batch_size} does not split evenly over"
                          f" {replicas} replicas: use a multiple of {replicas}, or"
                          " distribute.batch_size=per_replica")
    return batch_size


def scaled_learning_rate(cfg: DistributeConfig, learning_rate: float, batch_size: int,
                         global_batch: int) -> float:
    """The learning rate tuned for ``trainer.batch_size``, scaled to the global batch."""
    factor = global_batch / batch_size
    return learning_rate * {"none": 1.0, "linear": factor, "sqrt": math.sqrt(factor)}[
        cfg.lr_scaling]


def shard_by_data(dataset):
    """Each worker reads the whole (seeded, identically shuffled) pipeline and keeps its part
    of every global batch: the file list is one tensor, so file-level sharding cannot apply."""
    return _sharded(dataset, "DATA")


def read_whole(dataset):
    """A pipeline that reads only this worker's part already (a pack's shards dealt out by
    :func:`alexnet_exp.data.make_datasets`): tf.distribute must not shard it again."""
    return _sharded(dataset, "OFF")


def _sharded(dataset, policy: str):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = getattr(
        tf.data.experimental.AutoShardPolicy, policy)
    return dataset.with_options(options)


def shard_datasets(cfg: DistributeConfig, datasets):
    """A multi-worker job's pipelines: the training images of a pack this worker reads its own
    shards of left whole, everything else sharded by data (see :func:`shard_by_data`); the
    datasets unchanged for one process.

    tf.data's own sharding by file (``AutoShardPolicy.FILE``) cannot be used: it looks for the
    files by walking the pipeline back to its source and stops at ``ignore_errors``, which
    the pipeline needs."""
    from dataclasses import replace

    if cfg.strategy != "multi_worker":
        return datasets
    return replace(datasets,
                   train=(read_whole if datasets.own_shards else shard_by_data)(datasets.train),
                   val=shard_by_data(datasets.val),
                   val_indexed=shard_by_data(datasets.val_indexed))


def ready_to_fit(cfg: DistributeConfig, model, element_spec) -> None:
    """What a multi-worker model needs before ``fit`` (:func:`build_from_spec`)."""
    if cfg.strategy == "multi_worker":
        build_from_spec(model, element_spec)


def loggable(cfg: DistributeConfig, model):
    """The model to save or log from the chief alone (:func:`plain_copy` under a strategy)."""
    return plain_copy(model) if cfg.strategy != "none" else model


def build_from_spec(model, element_spec) -> None:
    """Build a multi-worker model's state from the dataset's spec before ``fit``.

    Keras 3.15 builds it from the first batch, reduced across replicas eagerly, which
    MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585); only shapes and dtypes
    are needed, and the spec has them.
    """
    import types

    def symbolic_build(self, iterator=None, data_batch=None):
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=element_spec if data_batch is None else data_batch)

    model._maybe_symbolic_build = types.MethodType(symbolic_build, model)


def _mend_keras_multi_worker_reduce() -> None:
    """Keras 3.15 averages a multi-worker step's scalar logs with ``axis=0``, which fails on
    scalars; average over replicas only (the result every single-worker strategy gets)."""
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "mended", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(
                strategy):
            import keras

            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if trainer._is_per_replica_instance(v) else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica.mended = True
    trainer.reduce_per_replica = reduce_per_replica


def plain_copy(model):
    """The model with ordinary (not mirrored) variables, to save or log from the chief alone:
    a distributed model's SavedModel export would wait for collectives the others never run."""
    import keras

    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


class SilentTracker:
    """A tracker that takes every call a Tracker takes and records nothing: a non-chief
    worker's (the chief records the run), and every job's under ``tracking=none``."""

    run_id = experiment_id = uri = ""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
