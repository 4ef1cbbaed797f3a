"""Scaling with the data set: epoch time and peak memory at 25%, 50% and 100% of the flowers
and at the images repeated 4x (a stand-in for a larger set), with ``data.cache=memory`` and
``data.cache=disk``. Expect time linear in the images and, with the disk cache, flat memory.

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
    from alexnet_exp.data import stratified_split
    from alexnet_exp.scan import scan_folder

    _, labels, _ = scan_folder(root, cfg.data)
    images = len(stratified_split(labels, cfg.data.val_split, cfg.seed)[0])
    return {"train_images": images, "epoch1_seconds": seconds[0], "epoch2_seconds": seconds[1],
            "ms_per_image": 1000 * seconds[1] / images, "peak_rss_mb": benchlib.peak_rss_mb()}


def main() -> None:
    parser = benchlib.parser(__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "FRACTION", "CACHE"),
                        help=argparse_hidden())
    args = parser.parse_args()
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
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(data), str(fraction), cache],
                    capture_output=True, text=True,
                    # a server in the shell outranks the scratch store: keep bench runs off it
                    env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
                line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if done.returncode or not line:
                    sys.exit(f"point {label} cache={cache} failed:\n{done.stderr[-3000:]}")
                point = {"data": label, "cache": cache, **json.loads(line[0][7:])}
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
