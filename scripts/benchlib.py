"""What every ``scripts/bench_*.py`` shares: where the data is, where results go, how to time.

Targets are ratios of two measurements taken in the same run (the machines are shared and
noisy), each result is a JSON file under ``bench/`` and the last line printed is a one-line
summary. Run them with ``make bench`` or one by one (``--help`` lists the options).
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOWERS_224 = REPO.parent / "shared" / "data" / "flower_photos_224"
RESULTS = REPO / "bench"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parser(description: str) -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--data", type=Path, default=FLOWERS_224,
                      help=f"class-folder image set (default {FLOWERS_224})")
    args.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    return args


def require_data(folder: Path) -> Path:
    if not folder.is_dir():
        sys.exit(f"benchmark data {folder} not found: pass --data <class folders>")
    return folder


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "cpu_avx512_bf16": " avx512_bf16" in flags, "host": platform.node()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def cpu_timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of ``work()``. CPU per unit
    of work barely moves when another job shares the cores, where wall time halves."""
    cpu = time.process_time()
    wall = timed(work)
    return wall, time.process_time() - cpu


def matmul_flops_per_second(dtype: str = "float32", n: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of an n x n matmul in ``dtype`` (the best of ``repeats``, after a warm-up): the
    machine's speed at this moment, measured beside what it is compared with."""
    from alexnet_exp import console

    console.load_tensorflow()  # TensorFlow's start-up lines held back, as the CLI does
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n], dtype=tf.float32), dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()  # warm up
    best = min(timed(lambda: matmul(a).numpy()) for _ in range(repeats))
    return 2 * n**3 / best


def compose(overrides: list[str]):
    """The typed ExperimentConfig that ``alexnet-exp <overrides>`` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from alexnet_exp.config_checks import validate
    from alexnet_exp.config_store import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))
    validate(cfg)
    return cfg


def write(name: str, result: dict, summary: str, out: Path = RESULTS) -> None:
    """``bench/<name>.json`` with the machine and the summary line; the line is printed last."""
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), **result, "summary": summary}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(summary, flush=True)
