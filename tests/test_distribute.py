"""distribute=none|mirrored|multi_worker: who the chief is, batch and learning-rate rules, and
two real worker processes on the loopback interface that train as one."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_MODEL, cli, logged_model, make_image_folder, runs_of, store

from alexnet_exp.config import DistributeConfig
from alexnet_exp.distribute import global_batch_size, placement, scaled_learning_rate
from alexnet_exp.errors import ConfigError

MULTI = DistributeConfig(strategy="multi_worker")
# No randomness inside a step (no dropout, augmentation or per-replica batch statistics) and
# fp32 (bf16 rounds differently per batch shape), so one step of two workers on halves of a
# batch must equal one step of one process on all of it. Plain SGD, not Adam: Adam's update
# hardly changes if the gradient is off by the replica count.
EXACT = ["data.val_split=0.2", *(a for a in TINY_MODEL if not a.startswith("optimizer")),
         "optimizer=sgd", "optimizer.momentum=0.0", "optimizer.learning_rate=0.05",
         "trainer.batch_size=32", "trainer.epochs=1", "norm=lrn", "dropout=off", "augment=none",
         "trainer.tensorboard=false", "trainer.precision=fp32"]


def tf_config(workers: list[str], kind: str, index: int, chief: str | None = None) -> dict:
    cluster = {"worker": workers, **({"chief": [chief]} if chief else {})}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


@pytest.mark.parametrize("kind, index, chief_task, expected, pipeline", [
    ("worker", 0, None, True, 0),
    ("worker", 1, None, False, 1),
    ("chief", 0, "h:3", True, 0),
    ("worker", 0, "h:3", False, 1),  # with a chief task, worker 0 is an ordinary worker
    ("worker", 1, "h:3", False, 2),
])
def test_the_chief_is_the_chief_task_else_worker_0(kind, index, chief_task, expected, pipeline):
    where = placement(MULTI, tf_config(["h:1", "h:2"], kind, index, chief_task))
    assert where.chief is expected
    assert where.task == f"{kind}:{index}"
    assert where.workers == (3 if chief_task else 2)
    assert where.index == pipeline  # which shards of a pack it reads: one each


def test_single_process_strategies_are_always_the_chief():
    assert placement(DistributeConfig(strategy="mirrored"), {}).chief


@pytest.mark.parametrize("environ, message", [
    ({}, "needs the TF_CONFIG environment variable"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a cluster spec"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["h:1"]}}'}, "TF_CONFIG is not a cluster spec"),
    (tf_config(["h:1", "h:2"], "worker", 2), "task worker:2 is not in its cluster (worker: 2)"),
])
def test_a_bad_tf_config_is_one_clear_error(environ, message):
    with pytest.raises(ConfigError, match="TF_CONFIG") as error:
        placement(MULTI, environ)
    assert message in str(error.value)


def test_global_batch_and_learning_rate_scaling():
    per_replica = DistributeConfig(batch_size="per_replica", lr_scaling="linear")
    assert global_batch_size(per_replica, 32, 4) == 128
    assert scaled_learning_rate(per_replica, 0.01, 32, 128) == pytest.approx(0.04)
    root = DistributeConfig(batch_size="per_replica", lr_scaling="sqrt")
    assert scaled_learning_rate(root, 0.01, 32, 128) == pytest.approx(0.02)
    assert global_batch_size(DistributeConfig(), 32, 4) == 32  # global: split over replicas
    with pytest.raises(ConfigError, match="trainer.batch_size=30 does not split evenly over 4"):
        global_batch_size(DistributeConfig(), 30, 4)


def test_multi_worker_without_tf_config_fails_before_training(tmp_path, tiny_data):
    result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "distribute=multi_worker", env={"TF_CONFIG": ""}, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "distribute=multi_worker needs the TF_CONFIG" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "mlruns").exists()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def logged_weights(cwd: Path) -> list[np.ndarray]:
    client = store(cwd)
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED"
    return logged_model(client, run.info.run_id).get_weights()


@pytest.mark.slow
def test_two_workers_train_as_one_and_log_one_run(tmp_path):
    # 2 x 20 images, val_split 0.2: 32 training images, one global batch of 32 = one step, 16
    # per worker (uneven shards would weight examples differently: a mean of two means).
    tiny_data = make_image_folder(tmp_path / "data", classes={"fig": 20, "lime": 20},
                                  size=(48, 40))
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    cluster = tmp_path / "cluster"
    scratch = tmp_path / "tmp"  # where the non-chief worker's temporary folder goes
    cluster.mkdir()
    scratch.mkdir()
    exe = str(Path(sys.executable).with_name("alexnet-exp"))
    env = dict(os.environ)
    procs = [subprocess.Popen(
        [exe, "data=folder", f"data.dir={tiny_data}", *EXACT, "distribute=multi_worker",
         f"hydra.run.dir={cluster}/outputs/worker{index}"],
        cwd=cluster, env={**env, **tf_config(workers, "worker", index), "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    try:
        outputs = [proc.communicate(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert "worker:1 done; the chief recorded the run" in outputs[1][0]

    client = store(cluster)
    (run,) = runs_of(client)  # exactly one run: the chief's
    tags = run.data.tags
    assert (tags["distribute.replicas"], tags["distribute.global_batch_size"]) == ("2", "32")
    assert run.data.params["distribute.strategy"] == "multi_worker"
    assert list(scratch.iterdir()) == []  # the worker's temporary folder is gone
    assert not (cluster / "outputs" / "worker1").exists() or not any(
        (cluster / "outputs" / "worker1").rglob("*.keras"))

    single = tmp_path / "single"
    single.mkdir()
    result = cli(single, "data=folder", f"data.dir={tiny_data}", *EXACT)
    assert result.returncode == 0, result.stderr[-3000:]
    together, alone = logged_weights(cluster), logged_weights(single)
    assert len(together) == len(alone)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(np.abs(a).max() > 0 for a in together)


@pytest.mark.slow
def test_mirrored_strategy_trains_and_records_its_replicas(tmp_path, tiny_data):
    with_bn = [a if a != "norm=lrn" else "norm=bn" for a in EXACT]  # synchronized BN builds
    client = store(tmp_path)
    result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *with_bn,
                 "distribute=mirrored", "distribute.batch_size=per_replica",
                 "distribute.lr_scaling=linear",
                 "tracking.log_model=false")  # asserts on tags only: no model to log (~3 s)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(client)
    assert run.data.tags["distribute.replicas"] == "1"  # the CPU: one replica
    assert run.data.tags["distribute.global_batch_size"] == "32"
    assert float(run.data.tags["distribute.learning_rate"]) == pytest.approx(
        float(run.data.params["optimizer.learning_rate"]))
