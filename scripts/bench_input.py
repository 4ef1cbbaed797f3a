"""Input pipeline throughput: alexnet_exp's tf.data pipeline against the blog's
``ImageDataGenerator.flow_from_directory``, doing the same work on the same JPEGs.

Work per image: decode, resize (256/227 of the crop), random 227 crop, horizontal flip, batch
of 32. ImageDataGenerator cannot crop, so it resizes straight to 227 and flips: less work than
ours, which only favours it. Targets: tf.data >= 10x its images/s; with the cache >= 30x.
"""

import tempfile
from pathlib import Path

import benchlib

BATCH, SIZE, CROP_SCALE = 32, 227, 1.1278


def generator_rate(root: Path, images: int) -> float:
    import tensorflow as tf

    flow = tf.keras.preprocessing.image.ImageDataGenerator(horizontal_flip=True)
    batches = flow.flow_from_directory(str(root), target_size=(SIZE, SIZE), batch_size=BATCH,
                                       class_mode="categorical", seed=0)
    steps = -(-images // BATCH)
    seen = 0

    def run():
        nonlocal seen
        for _ in range(steps):
            seen += len(next(batches)[0])

    seconds = benchlib.timed(run)
    return seen / seconds


def pipeline_rate(root: Path, cache: str, ordered: bool, threads: int, epochs: int) -> float:
    """Images/s of the training pipeline's last epoch (earlier epochs fill the cache)."""
    from alexnet_exp.config import AugmentConfig, DataConfig
    from alexnet_exp.data import make_datasets

    data = DataConfig(name="folder", dir=str(root), cache=cache, ordered=ordered,
                      threads=threads)
    augment = AugmentConfig(name="flip", flip=True, crop_scale=CROP_SCALE)
    with tempfile.TemporaryDirectory() as scratch:
        datasets = make_datasets(data, augment, root, SIZE, BATCH, 0, Path(scratch))
        seconds = images = 0
        for _ in range(epochs):
            images = 0

            def run():
                nonlocal images
                for batch, _ in datasets.train:
                    images += int(batch.shape[0])

            seconds = benchlib.timed(run)
    return images / seconds


def main() -> None:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    root = benchlib.require_data(args.data)
    from alexnet_exp.scan import scan_folder  # noqa: F401  (checks run once, outside timing)

    pipeline_rate(root, "none", True, 0, 1)  # warm the per-file check cache and the OS cache
    rates = {"image_data_generator": generator_rate(root, 2496)}
    for cache in ("none", "memory"):
        for ordered in (True, False):
            for threads in (0, 2):
                key = f"tf.data cache={cache} ordered={ordered} threads={threads}"
                rates[key] = pipeline_rate(root, cache, ordered, threads,
                                           epochs=1 if cache == "none" else 2)
                print(f"  {key}: {rates[key]:,.0f} images/s", flush=True)
    base = rates["image_data_generator"]
    best_plain = max(v for k, v in rates.items() if "cache=none" in k)
    best_cached = max(v for k, v in rates.items() if "cache=memory" in k)
    default_plain = rates["tf.data cache=none ordered=True threads=0"]
    default_cached = rates["tf.data cache=memory ordered=True threads=0"]
    result = {
        "images_per_second": rates,
        "ratio_uncached_default": default_plain / base,
        "ratio_cached_default": default_cached / base,
        "ratio_uncached_best": best_plain / base,
        "ratio_cached_best": best_cached / base,
        "targets": {"uncached": 10, "cached": 30},
    }
    summary = (f"bench_input: ImageDataGenerator {base:,.0f} img/s; tf.data"
               f" {default_plain:,.0f} img/s ({default_plain / base:.1f}x, target 10x),"
               f" cached {default_cached:,.0f} img/s ({default_cached / base:.1f}x, target 30x)")
    benchlib.write("input", result, summary, args.out)


if __name__ == "__main__":
    main()
