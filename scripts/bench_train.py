"""End-to-end training throughput and compute efficiency on this machine.

1. The framework's cost: ``model.fit`` through alexnet_exp's runner (real tf.data pipeline from
   JPEGs, cache, augmentation, checkpoints, TensorBoard, MLflow logging every epoch) against
   the same model and step fed from tensors already in memory. Target >= 0.97x, for
   ``model=small`` and ``model=seed`` at 227.
2. Compute: the seed AlexNet's training FLOP/s (3x the forward FLOPs counted from its layers)
   as a share of a 4096x4096 matmul's FLOP/s in the same dtype. Target >= 70%.
3. Precision: bf16 against fp32 training throughput (target >= 1.5x where the CPU has
   AVX512-BF16) and val accuracy of both on a fixed small run (within 1 point).

Throughput is images / second over epochs 2..N (epoch 1 traces the step and fills the cache).
"""

import math
import tempfile
import time
from pathlib import Path

import benchlib


def forward_flops(model) -> int:
    """Multiply-adds x 2 of the conv and dense layers (pooling and normalisation are noise)."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin_per_group, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            flops += 2 * h * w * kh * kw * cin_per_group * cout
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * math.prod(layer.kernel.shape)
    return flops


def matmul_flops_per_second(dtype: str, n: int = 4096, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()  # warm up
    best = min(benchlib.timed(lambda: matmul(a).numpy()) for _ in range(repeats))
    return 2 * n**3 / best


class EpochClock:
    """Wall seconds of each epoch, callbacks included (a Keras callback put first)."""

    def __init__(self):
        import keras

        clock = self

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                clock.seconds.append(time.perf_counter() - clock.started)

        self.seconds: list[float] = []
        self.callback = Clock()


def experiment_config(model: str, root: Path, precision: str, epochs: int, per_class: int,
                      store: Path):
    seed_net = ["norm=bn", "dropout=off"] if model == "seed" else []  # the blog's network
    return benchlib.compose([
        f"model={model}", "model.input_size=227", *seed_net, "data=folder", f"data.dir={root}",
        f"data.max_images_per_class={per_class}", "augment=flip", "augment.crop_scale=1.1278",
        f"trainer.epochs={epochs}", "trainer.batch_size=32", f"trainer.precision={precision}",
        "trainer.verbose=0", "trainer.early_stopping_patience=null",
        "trainer.reduce_lr_patience=null", f"tracking.store_dir={store}",
        "tracking.log_model=false"])


def train_images(cfg) -> int:
    from alexnet_exp.data import scan_folder, stratified_split

    _, labels, _ = scan_folder(Path(cfg.data.dir), cfg.data)
    train_idx, _ = stratified_split(labels, cfg.data.val_split, cfg.seed)
    return len(train_idx)


def framework_rate(cfg, scratch: Path, images: int) -> tuple[float, dict]:
    """Images/s of epochs 2..N of a real ``alexnet-exp`` job (runner, tracking, callbacks):
    the fit's wall time (``train_seconds``) less epoch 1."""
    import mlflow

    from alexnet_exp import runner

    summary = runner.run(cfg, runner.JobContext(launch_dir=scratch, output_dir=scratch / "job"))
    history = mlflow.tracking.MlflowClient().get_metric_history(summary.run_id, "epoch_seconds")
    epoch_seconds = [m.value for m in sorted(history, key=lambda m: m.step)]
    total = summary.metrics["train_seconds"]
    rate = images * (len(epoch_seconds) - 1) / (total - epoch_seconds[0])
    return rate, {"run_id": summary.run_id, "epoch_seconds": epoch_seconds,
                  "train_seconds": total, "train_images": images}


def in_memory_rate(cfg, train_images: int, val_images: int) -> tuple[float, list[float]]:
    """Images/s of epochs 2..N of the same model and step fed from in-memory tensors."""
    import numpy as np

    from alexnet_exp import train
    from alexnet_exp.model import build_alexnet

    train.configure_runtime(cfg.trainer, cfg.seed)
    model = build_alexnet(cfg.model, 5)
    train.compile_model(model, cfg.optimizer, cfg.trainer)
    rng = np.random.default_rng(0)
    size = cfg.model.input_size

    def batches(n):
        """Ready batches held in memory: the ideal feed, no decode, no copy but the step's."""
        import tensorflow as tf

        x = rng.integers(0, 256, size=(n, size, size, 3)).astype("float32")
        y = np.eye(5, dtype="float32")[rng.integers(0, 5, n)]
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.trainer.batch_size).cache()

    clock = EpochClock()
    started = time.perf_counter()
    model.fit(batches(train_images), validation_data=batches(val_images),
              epochs=cfg.trainer.epochs, verbose=0, callbacks=[clock.callback])
    total = time.perf_counter() - started
    return train_images * (len(clock.seconds) - 1) / (total - clock.seconds[0]), clock.seconds


def main() -> None:
    args = benchlib.parser(__doc__.splitlines()[0])
    args.add_argument("--epochs", type=int, default=4)
    args.add_argument("--per-class", type=int, default=48, help="images per class used")
    args.add_argument("--models", default="small,seed")
    args = args.parse_args()
    root = benchlib.require_data(args.data)
    import mlflow  # noqa: F401

    result: dict = {"overhead": {}, "compute": {}, "precision": {}}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in args.models.split(","):
            cfg = experiment_config(name, root, "fp32", args.epochs, args.per_class,
                                    scratch / "mlruns")
            images = train_images(cfg)
            val_images = 5 * args.per_class - images
            memory, memory_epochs = in_memory_rate(cfg, images, val_images)
            framework, details = framework_rate(cfg, scratch, images)
            result["overhead"][name] = {"in_memory": memory, "framework": framework,
                                        "ratio": framework / memory,
                                        "in_memory_epoch_seconds": memory_epochs, **details}
            print(f"  model={name}: in memory {memory:.1f} img/s, framework {framework:.1f}"
                  f" img/s ({framework / memory:.3f}x)", flush=True)

            if name == "seed":
                import tensorflow as tf  # noqa: F401

                from alexnet_exp.model import build_alexnet

                flops = forward_flops(build_alexnet(cfg.model, 5))
                for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
                    step_cfg = experiment_config(name, root, precision, args.epochs,
                                                 args.per_class, scratch / "mlruns")
                    rate = memory if precision == "fp32" else in_memory_rate(
                        step_cfg, images, val_images)[0]
                    ceiling = matmul_flops_per_second(dtype)
                    achieved = 3 * flops * rate
                    result["compute"][precision] = {
                        "forward_gflops_per_image": flops / 1e9, "images_per_second": rate,
                        "achieved_gflops": achieved / 1e9, "matmul_gflops": ceiling / 1e9,
                        "share_of_matmul": achieved / ceiling}
                    print(f"  seed {precision}: {achieved / 1e9:.0f} GFLOP/s of"
                          f" {ceiling / 1e9:.0f} matmul ({achieved / ceiling:.0%})", flush=True)
                fp32_rate = result["compute"]["fp32"]["images_per_second"]
                bf16_rate = result["compute"]["bf16"]["images_per_second"]
                result["precision"]["bf16_over_fp32"] = bf16_rate / fp32_rate

    overhead = result["overhead"]
    parts = [f"{name} {v['ratio']:.3f}x" for name, v in overhead.items()]
    summary = f"bench_train: framework / in-memory throughput {', '.join(parts)} (target 0.97x)"
    if result["compute"]:
        c = result["compute"]
        summary += (f"; seed fp32 at {c['fp32']['share_of_matmul']:.0%} of matmul (target 70%),"
                    f" bf16 {result['precision']['bf16_over_fp32']:.2f}x fp32 (target 1.5x)")
    benchlib.write("train", result, summary, args.out)


if __name__ == "__main__":
    main()
