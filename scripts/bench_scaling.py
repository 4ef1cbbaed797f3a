"""Scaling with the data set: epoch time and peak memory at 25%, 50% and 100% of the flowers
and at the images repeated 4x (a stand-in for a larger set), with ``data.cache=memory`` and
``data.cache=disk``. Expect time linear in the images and, with the disk cache, flat memory.

``--synthetic DIR``: the ImageNet-100-sized run instead (issue 16). DIR is built by
``make_synthetic_folder.py`` if it is not there (100 classes x 1,000 JPEGs, ~2 GB), and the
default settings (``data.cache=auto``, ``data.check=auto``) train one epoch of
``experiment=flowers_fast`` at 10k, 30k and 100k images, the 100k point twice (the second run
finds its check results stored), then 100k with ``data.cache=none``; then the 100k folder is
packed (``alexnet-exp-pack``, timed, into DIR-pack beside it, kept) and trained from with
``data=records``, with the defaults and with ``data.cache=none``. ``--second-epoch`` with it:
10k and 100k with the defaults for two epochs, the second timed (a filled cache). Per point:
time from the process's start to the first training step, steady images/s (after the first
20 steps of the epoch timed), peak RSS and the disk the cache took. Targets: peak RSS within
20% from 10k to 100k, the second 100k run's first step within 2 minutes, images/s within 10%
of the 10k figure.

Each point is a fresh process (its own peak RSS) training ``experiment=flowers_fast``'s model
for two epochs; the second (served from the cache) is the one timed. The 4x copies are
symbolic links inside each class, so the split puts copies on both sides: fine for timing,
meaningless for accuracy.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

POINTS = (("25%", 0.25, 1), ("50%", 0.5, 1), ("100%", 1.0, 1), ("400%", 1.0, 4))


def repeated(root: Path, copies: int, into: Path) -> Path:
    """``root`` with every image linked ``copies`` times under new names, same classes."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        (into / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir()):
            for copy in range(copies):
                (into / folder.name / f"{copy}-{image.name}").symlink_to(image)
    return into


def child(root: Path, fraction: float, cache: str, scratch: Path) -> dict:
    """One point, run inside its own process: two epochs, the second timed."""
    from alexnet_exp import runner

    counts = [len(list(p.iterdir())) for p in root.iterdir() if p.is_dir()]
    per_class = max(2, int(max(counts) * fraction))
    cfg = benchlib.compose([
        "experiment=flowers_fast", f"data.dir={root}", f"data.cache={cache}",
        f"data.cache_path={scratch / 'tfdata'}", f"data.max_images_per_class={per_class}",
        "trainer.epochs=2", "trainer.verbose=0", "trainer.tensorboard=false",
        "tracking.log_model=false", f"tracking.store_dir={scratch / 'mlruns'}"])
    summary = runner.run(cfg, runner.JobContext(launch_dir=scratch, output_dir=scratch / "job"))
    import mlflow

    client = mlflow.tracking.MlflowClient(summary.tracking_uri)
    history = client.get_metric_history(summary.run_id, "epoch_seconds")
    seconds = [m.value for m in sorted(history, key=lambda m: m.step)]
    from alexnet_exp.inputs import stratified_split
    from alexnet_exp.scan import scan_folder

    _, labels, _ = scan_folder(root, cfg.data)
    images = len(stratified_split(labels, cfg.data.val_split, cfg.seed)[0])
    return {"train_images": images, "epoch1_seconds": seconds[0], "epoch2_seconds": seconds[1],
            "ms_per_image": 1000 * seconds[1] / images, "peak_rss_mb": benchlib.peak_rss_mb()}


class StepClock:
    """Wall time of every training step's end, and the disk cache's size at the end of the
    epoch (the runner removes the job's cache when the job ends): a Keras callback added to
    the runner's fit."""

    def __init__(self, cache_folder: Path):
        import keras

        clock = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.epoch_starts.append(len(clock.ends))

            def on_train_batch_end(self, batch, logs=None):
                clock.ends.append(time.perf_counter())

            def on_epoch_end(self, epoch, logs=None):
                clock.cache_bytes = sum(p.stat().st_size for p in cache_folder.rglob("*")
                                        if p.is_file()) if cache_folder.exists() else 0

        self.ends: list[float] = []
        self.epoch_starts: list[int] = []  # index into ends of each epoch's first step
        self.cache_bytes = 0
        self.callback = Callback()


def synthetic_child(root: Path, per_class: int, cache: str, scratch: Path, started: float,
                    epochs: int = 1) -> dict:
    """One synthetic point in its own process: ``epochs`` with the default data settings, the
    last one timed; a ``per_class`` of 0: ``root`` is a pack, trained from whole with
    ``data=records``."""
    import keras

    from alexnet_exp import runner

    job = scratch / "job"
    clock = StepClock(job / runner.TFDATA_CACHE)
    fit = keras.Model.fit

    def timed_fit(model, *args, callbacks=None, **kwargs):
        return fit(model, *args, callbacks=[*(callbacks or []), clock.callback], **kwargs)

    keras.Model.fit = timed_fit
    source = ["data=records"] if not per_class else [f"data.max_images_per_class={per_class}"]
    cfg = benchlib.compose([
        "experiment=flowers_fast", *source, f"data.dir={root}", f"data.cache={cache}",
        f"trainer.epochs={epochs}", "trainer.verbose=0",
        "trainer.tensorboard=false", "trainer.val_tta=none", "trainer.checkpoint=false",
        "tracking.log_model=false", f"tracking.store_dir={scratch / 'mlruns'}"])
    summary = runner.run(cfg, runner.JobContext(launch_dir=scratch, output_dir=job))
    import mlflow

    run = mlflow.tracking.MlflowClient(summary.tracking_uri).get_run(summary.run_id)
    report = run.data.tags.get("alexnet_exp.data_cache")
    steps = clock.ends[clock.epoch_starts[-1] + 20:]
    rate = cfg.trainer.batch_size * (len(steps) - 1) / (steps[-1] - steps[0])
    images = len(pack_files(root)) if not per_class else per_class * len(
        [p for p in root.iterdir() if p.is_dir()])
    return {"images": images,
            "cache_chosen": report, "first_step_seconds": clock.ends[0] - started,
            "images_per_second": rate, "peak_rss_mb": benchlib.peak_rss_mb(),
            "cache_disk_mb": clock.cache_bytes / 1e6}


def pack_files(pack: Path) -> list[str]:
    from alexnet_exp import packed

    manifest = packed.open_pack(pack)
    return [f for split in packed.TRAINING_SPLITS
            for f in packed.read_index(pack, manifest, split)[0]]


def pack_folder(root: Path, pack: Path) -> float:
    """Seconds ``alexnet-exp-pack`` took to pack ``root`` into ``pack`` (0: packed already)."""
    from alexnet_exp import packed

    if packed.is_pack(pack):
        return 0.0
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("alexnet-exp-pack")),
                           f"data.dir={root}", f"output={pack}"], capture_output=True, text=True,
                          env=bench_env())
    if done.returncode:
        sys.exit(f"packing {root} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def bench_env() -> dict:
    """This environment without MLFLOW_TRACKING_URI: a server in the shell would outrank the
    scratch store, and bench runs stay off it."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def run_point(child_args: list[str], label: str, cache: str, env: dict) -> dict:
    """One point in a fresh process of this script (its own peak RSS): the child's result,
    with the point's label and cache; a failed child ends the benchmark with its error."""
    done = subprocess.run([sys.executable, __file__, *child_args], capture_output=True,
                          text=True, env=env)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not line:
        sys.exit(f"point {label} cache={cache} failed:\n{done.stderr[-3000:]}")
    return {"data": label, "cache": cache, **json.loads(line[0][7:])}


def synthetic(root: Path, source: Path, out: Path) -> None:
    import make_synthetic_folder

    make_synthetic_folder.build(source, root, classes=100, per_class=1000)
    pack = root.with_name(f"{root.name}-pack")
    points = [("10k", 100, "auto"), ("30k", 300, "auto"), ("100k", 1000, "auto"),
              ("100k again", 1000, "auto"), ("100k", 1000, "none"),
              ("100k packed", 0, "auto"), ("100k packed", 0, "none")]
    table = []
    pack_seconds = None
    with tempfile.TemporaryDirectory() as tmp:
        # the check store of these runs only: the first 100k run starts without one
        env = {**bench_env(), "ALEXNET_EXP_CACHE_DIR": str(Path(tmp) / "cache")}
        for label, per_class, cache in points:
            if not per_class and pack_seconds is None:
                pack_seconds = pack_folder(root, pack)
                print(f"  packed {root} into {pack} in {pack_seconds:,.0f} s", flush=True)
            point = run_point(["--synthetic-child", str(pack if not per_class else root),
                               str(per_class), cache], label, cache, env)
            table.append(point)
            print(f"  {label:>10} data.cache={cache:4} -> {point['cache_chosen']:6}: first step"
                  f" {point['first_step_seconds']:5.0f} s, {point['images_per_second']:5.0f}"
                  f" images/s, peak RSS {point['peak_rss_mb']:,.0f} MB, cache on disk"
                  f" {point['cache_disk_mb']:,.0f} MB", flush=True)
    small, big, again = table[0], table[2], table[3]
    packed_best = max(table[5:], key=lambda p: p["images_per_second"])
    result = {"points": table, "pack_seconds": pack_seconds,
              "packed_rate_100k_over_10k": packed_best["images_per_second"]
              / small["images_per_second"],
              "rss_100k_over_10k": big["peak_rss_mb"] / small["peak_rss_mb"],
              "rate_100k_over_10k": big["images_per_second"] / small["images_per_second"],
              "first_step_100k_second_run_seconds": again["first_step_seconds"],
              "targets": {"rss_100k_over_10k": 1.2, "rate_100k_over_10k": 0.9,
                          "first_step_100k_second_run_seconds": 120}}
    summary = (f"bench_scaling synthetic: 10k -> 100k images with the defaults: peak RSS"
               f" {small['peak_rss_mb']:,.0f} -> {big['peak_rss_mb']:,.0f} MB"
               f" ({result['rss_100k_over_10k']:.2f}x, target <= 1.2x), images/s"
               f" {small['images_per_second']:,.0f} -> {big['images_per_second']:,.0f}"
               f" ({result['rate_100k_over_10k']:.2f}x, target >= 0.9x), first step of the"
               f" second 100k run {again['first_step_seconds']:.0f} s (target <= 120 s);"
               f" packed: {packed_best['images_per_second']:,.0f} images/s"
               f" ({result['packed_rate_100k_over_10k']:.2f}x of 10k, data.cache="
               f"{packed_best['cache']})")
    benchlib.write("scaling_synthetic", result, summary, out)


def second_epoch(root: Path, out: Path) -> None:
    """10k and 100k images with the defaults, two epochs each, the second timed: the rate a
    cache (memory at 10k, disk at 100k) serves once filled, where the first epoch fills it."""
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**bench_env(), "ALEXNET_EXP_CACHE_DIR": str(Path(tmp) / "cache")}
        for label, per_class in (("10k", 100), ("100k", 1000)):
            point = run_point(["--synthetic-child", str(root), str(per_class), "auto", "2"],
                              label, "auto", env)
            table.append(point)
            print(f"  {label:>5} -> {point['cache_chosen']:6}: epoch 2 at"
                  f" {point['images_per_second']:5.0f} images/s", flush=True)
    ratio = table[1]["images_per_second"] / table[0]["images_per_second"]
    summary = (f"bench_scaling second epoch: 10k -> 100k images with the defaults, epoch 2:"
               f" {table[0]['images_per_second']:,.0f} -> {table[1]['images_per_second']:,.0f}"
               f" images/s ({ratio:.2f}x, target >= 0.9x)")
    benchlib.write("scaling_second_epoch", {"points": table, "rate_100k_over_10k": ratio},
                   summary, out)


def main() -> None:
    started = time.perf_counter()
    parser = benchlib.parser(__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "FRACTION", "CACHE"),
                        help=argparse_hidden())
    parser.add_argument("--synthetic", type=Path, metavar="DIR",
                        help="the ImageNet-100-sized run on DIR (built there if missing)")
    parser.add_argument("--second-epoch", action="store_true",
                        help="with --synthetic: 10k and 100k, two epochs, the second timed")
    parser.add_argument("--synthetic-child", nargs="+", help=argparse_hidden())
    args = parser.parse_args()
    if args.synthetic_child:
        root, per_class, cache, *epochs = args.synthetic_child
        with tempfile.TemporaryDirectory() as tmp:
            point = synthetic_child(Path(root), int(per_class), cache, Path(tmp), started,
                                    int(epochs[0]) if epochs else 1)
        print("RESULT " + json.dumps(point), flush=True)
        return
    if args.synthetic and args.second_epoch:
        second_epoch(args.synthetic, args.out)
        return
    if args.synthetic:
        synthetic(args.synthetic, benchlib.require_data(args.data), args.out)
        return
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            point = child(Path(args.child[0]), float(args.child[1]), args.child[2], Path(tmp))
        print("RESULT " + json.dumps(point), flush=True)
        return
    root = benchlib.require_data(args.data)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for cache in ("memory", "disk"):
            for label, fraction, copies in POINTS:
                data = root if copies == 1 else Path(tmp) / f"x{copies}"
                if copies > 1 and not data.exists():
                    repeated(root, copies, data)
                point = run_point(["--child", str(data), str(fraction), cache], label, cache,
                                  bench_env())
                table.append(point)
                print(f"  {label:>5} cache={cache:6} {point['train_images']:6} images:"
                      f" epoch {point['epoch2_seconds']:6.1f} s"
                      f" ({point['ms_per_image']:.2f} ms/image), peak RSS"
                      f" {point['peak_rss_mb']:,.0f} MB", flush=True)

    def rows(cache):
        return [p for p in table if p["cache"] == cache]

    per_image = [p["ms_per_image"] for p in table]
    disk = [p["peak_rss_mb"] for p in rows("disk")]
    memory = [p["peak_rss_mb"] for p in rows("memory")]
    result = {"points": table,
              "ms_per_image_spread": max(per_image) / min(per_image),
              "disk_cache_rss_growth_mb": disk[-1] - disk[0],
              "memory_cache_rss_growth_mb": memory[-1] - memory[0]}
    summary = (f"bench_scaling: ms/image within {result['ms_per_image_spread']:.2f}x from 25% to"
               f" 400% of the data; peak RSS grows {result['memory_cache_rss_growth_mb']:,.0f}"
               f" MB with cache=memory, {result['disk_cache_rss_growth_mb']:,.0f} MB with"
               " cache=disk")
    benchlib.write("scaling", result, summary, args.out)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
