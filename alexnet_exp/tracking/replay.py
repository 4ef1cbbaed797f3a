"""Sending an outbox to the server: from the training process when the server is back, or from
``alexnet-exp-sync`` afterwards (:func:`sync`). What an outbox holds is :mod:`.outbox`'s.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_exp.errors import redact
from alexnet_exp.tracking.outbox import PREFIX, ModelLoader, NoModelLoader, Outbox
from alexnet_exp.tracking.records import dataset_input, log_tf_model

log = logging.getLogger(__name__)

NAMES = {"params": "param batch(es)", "tags": "tag batch(es)", "artifact": "artifact(s)",
         "artifacts": "artifact folder(s)", "dataset": "data set", "model": "model"}

@dataclass
class Replayed:
    run_id: str
    points: int = 0
    already: int = 0
    other: dict[str, int] = field(default_factory=dict)
    status: str | None = None

    def line(self) -> str:
        done = [f"{self.points} metric points logged"]
        if self.already:
            done.append(f"{self.already} already in the store")
        done += [f"{n} {NAMES.get(op, op)}" for op, n in self.other.items()]
        ended = f"; ended {self.status}" if self.status else "; left RUNNING (no end recorded)"
        return f"run {self.run_id}: {', '.join(done)}{ended}"


def replay(box: Outbox, uri: str | None = None, with_end: bool = True,
           load_model: ModelLoader | None = None) -> Replayed:
    """Send the outbox's records to the server in order, then delete it.

    ``with_end=False`` leaves out the recorded end of the run (a resumed run is RUNNING again
    and ends itself). ``load_model`` reads a buffered ``.keras`` model back (tracking knows no
    layers of ours); a model record met without one raises :class:`NoModelLoader`. On an error
    the records not yet sent are kept and the error raised.
    """
    from mlflow import MlflowClient

    records = box.records()
    header, body = records[0], records[1:]
    client = MlflowClient(uri or header["uri"])
    result = Replayed(header["run_id"])
    seen: dict[str, set] = {}
    for index, record in enumerate(body):
        try:
            _apply(client, box, record, result, seen, with_end, load_model)
        except BaseException:
            box._rewrite([header, *body[index:]])
            raise
    box.delete()
    return result


def _apply(client, box: Outbox, record: dict, result: Replayed, seen: dict, with_end,
           load_model: ModelLoader | None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run_id, op = result.run_id, record["op"]
    if op == "metrics":
        step, stamp = record.get("step") or 0, record["timestamp"]
        points = []
        for key, value in record["metrics"].items():
            if key not in seen:
                seen[key] = {(m.step, m.timestamp) for m in client.get_metric_history(run_id, key)}
            if (step, stamp) in seen[key]:
                result.already += 1
                continue
            points.append(Metric(key, value, stamp, step))
            seen[key].add((step, stamp))
        if points:
            client.log_batch(run_id, metrics=points)
        result.points += len(points)
        return
    if op == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in record["params"].items()])
    elif op == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in record["tags"].items()])
    elif op == "artifact":
        client.log_artifact(run_id, str(box.files / record["file"]), record["artifact_path"])
    elif op == "artifacts":
        client.log_artifacts(run_id, str(box.files / record["dir"]), record["artifact_path"])
    elif op == "dataset":
        data = json.loads((box.files / record["file"]).read_text())
        client.log_inputs(run_id, datasets=[dataset_input(**data)])
    elif op == "model":
        _replay_model(client, box, record, run_id, load_model)
    elif op == "end":
        if not with_end:
            return
        client.set_terminated(run_id, record["status"])
        result.status = record["status"]
        return
    else:
        raise ValueError(f"unknown outbox record {op!r} in {box.path}")
    result.other[op] = result.other.get(op, 0) + 1


def _replay_model(client, box: Outbox, record: dict, run_id: str,
                  load_model: ModelLoader | None) -> None:
    """Log the model saved during the outage exactly as a live run would (``load_model``, the
    caller's, brings TensorFlow)."""
    import contextlib
    import io

    import numpy as np

    from alexnet_exp.tracking.store import Store

    path = box.files / record["file"]
    if load_model is None:
        raise NoModelLoader(path)
    model = load_model(path)
    example = np.load(box.files / record["example"])
    # Without an active run, MLflow would file the logged model under experiment 0.
    experiment_id = client.get_run(run_id).info.experiment_id
    with Store(client.tracking_uri).fluent(experiment_id), \
            contextlib.redirect_stdout(io.StringIO()):  # predict's progress bars, the export's
        log_tf_model(model, example, Path(record["code_dir"]), record["metadata"], run_id=run_id,
                     name=record.get("name", "model"), register_as=record.get("register_as"))


def pending(folder: Path) -> list[Outbox]:
    return [Outbox(p) for p in sorted(Path(folder).expanduser().glob(f"{PREFIX}*.jsonl"))]


def sync(folder: Path, uri: str | None = None, load_model: ModelLoader | None = None) -> int:
    """``alexnet-exp-sync``: replay every outbox in ``folder``; 0 when all are sent (or there
    was nothing to send), 2 with one line when a server is still unreachable."""
    from alexnet_exp.tracking.outage import probe

    boxes = pending(folder)
    if not boxes:
        log.info(f"alexnet-exp-sync: nothing to sync in {folder}")
        return 0
    reasons: dict[str, str | None] = {}
    waiting: dict[str, int] = {}
    for box in boxes:
        records = box.records()
        if not records or records[0].get("op") != "run":
            log.info(f"alexnet-exp-sync: skipping {box.path}: not an outbox file")
            continue
        writer = box.writer_alive()
        if writer:
            log.info(f"alexnet-exp-sync: skipping run {records[0]['run_id']}: process {writer}"
                     " is still training it (it replays its own outbox)")
            continue
        target = uri or records[0]["uri"]
        if "***@" in target:
            reasons[target] = "its credentials are not stored: pass tracking.uri=<full URI>"
        elif target not in reasons:
            reasons[target] = probe(target)
        if reasons[target]:
            waiting[target] = waiting.get(target, 0) + 1
            continue
        log.info(f"alexnet-exp-sync: {replay(box, target, load_model=load_model).line()}")
    for target, count in waiting.items():
        log.error(f"alexnet-exp-sync: error: tracking server {redact(target)} is not reachable"
                  f" ({reasons[target]}); {count} run(s) wait in {folder}: run"
                  " alexnet-exp-sync again when it is up")
    return 2 if waiting else 0
