"""Input pipeline throughput: alexnet_exp's tf.data pipeline against the blog's
``ImageDataGenerator.flow_from_directory``, doing the same work on the same JPEGs, and against
its own ceiling: a bare tf.data map of ``decode_jpeg`` + resize to 256, batched (each timed
on its second pass: a training run pays the start-up of its pipeline once, not per epoch).

Work per image: decode, resize (256/227 of the crop), random 227 crop, horizontal flip, batch
of 32. ImageDataGenerator cannot crop, so it resizes straight to 227 and flips: less work than
ours, which only favours it. Targets: tf.data >= 10x its images/s; with the cache >= 30x; the
uncached pipeline (the path of every set too big to cache) >= 90% of the ceiling. The ceiling
and the uncached pipeline are timed in turns, five times each, and the median ratio of a turn
is reported: the machine's speed drifts within a run. Beside images/s, each turn measures the
process's CPU time per image, which another job on the cores barely moves (images/s halves):
the ceiling's over the pipeline's is what the pipeline spends beyond the bare decode and resize.
The same uncached pipeline reading the
images from a pack (``alexnet-exp-pack``, ``data=records``) is timed in the same turns: the
rate per core it gives is what docs/scaling.md sizes a GPU machine's CPUs by.
"""

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import benchlib

BATCH, SIZE, CROP_SCALE = 32, 227, 1.1278
STORED = round(SIZE * CROP_SCALE)  # 256
CEILING = "decode_jpeg + resize ceiling"


@dataclass
class Timing:
    per_second: float  # images
    cpu_ms: float  # this process's CPU (all threads) per image


def timing(run, images) -> Timing:
    wall, cpu = benchlib.cpu_timed(run)
    count = images()
    return Timing(count / wall, 1e3 * cpu / count)


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


def ceiling_rate(root: Path, images: int) -> Timing:
    """Images/s of the least a pipeline of these files does: read, decode, resize, batch."""
    import tensorflow as tf

    files = sorted(str(p) for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg"))
    files = (files * (1 + images // max(len(files), 1)))[:images]

    def decode(path):
        return tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path), channels=3),
                               [STORED, STORED])

    ds = tf.data.Dataset.from_tensor_slices(files).map(decode,
                                                       num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    seen = 0

    def run():
        nonlocal seen
        seen = 0
        for batch in ds:
            seen += int(batch.shape[0])

    run()  # as the pipeline's: its second pass is timed, start-up (tracing, threads) aside
    return timing(run, lambda: seen)


def pipeline_rate(root: Path, cache: str, ordered: bool, threads: int, epochs: int,
                  source: str = "folder") -> Timing:
    """Images/s of the training pipeline's last epoch (earlier epochs fill the cache);
    ``source`` records: ``root`` is a pack."""
    from alexnet_exp.config import AugmentConfig, DataConfig
    from alexnet_exp.data import make_datasets

    data = DataConfig(name=source, dir=str(root), cache=cache, ordered=ordered,
                      threads=threads)
    augment = AugmentConfig(name="flip", flip=True, crop_scale=CROP_SCALE, pca_std=0.0)
    with tempfile.TemporaryDirectory() as scratch:
        datasets = make_datasets(data, augment, root, SIZE, BATCH, 0, Path(scratch))
        images = 0

        def run():
            nonlocal images
            images = 0
            for batch, _ in datasets.train:
                images += int(batch.shape[0])

        for _ in range(epochs):
            last = timing(run, lambda: images)
    return last


def main() -> None:
    parser = benchlib.parser(__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5,
                        help="rounds of the ceiling, folder and pack timings (default 5)")
    args = parser.parse_args()
    root = benchlib.require_data(args.data)
    from alexnet_exp.scan import scan_folder  # noqa: F401  (checks run once, outside timing)

    pipeline_rate(root, "none", True, 0, 1)  # warm the per-file check cache and the OS cache
    rates = {"image_data_generator": generator_rate(root, 2496)}
    default_key = "tf.data cache=none ordered=True threads=0"
    records_key = "tf.data records cache=none"
    turns = {CEILING: [], default_key: [], records_key: []}
    with tempfile.TemporaryDirectory() as scratch:
        pack = Path(scratch) / "pack"
        subprocess.run([str(Path(sys.executable).with_name("alexnet-exp-pack")),
                        f"data.dir={root}", f"output={pack}"], check=True, capture_output=True)
        for _ in range(args.turns):  # in turns: the ratio of each to the ceiling is the target
            turns[CEILING].append(ceiling_rate(root, 2496))
            turns[default_key].append(pipeline_rate(root, "none", True, 0, 2))
            turns[records_key].append(pipeline_rate(pack, "none", True, 0, 2, "records"))
    rates.update({key: max(t.per_second for t in values) for key, values in turns.items()})
    # The median of each turn's ratio: a turn's two timings are seconds apart, so a drift of
    # the machine's speed (10% within a minute here) cancels out of it. The same of the CPU
    # per image (the ceiling's over the pipeline's): what the pipeline spends beyond the bare
    # decode and resize, which another job on the cores barely moves.
    to_ceiling, cpu_to_ceiling = {}, {}
    for key in (default_key, records_key):
        pairs = list(zip(turns[key], turns[CEILING], strict=True))
        to_ceiling[key] = statistics.median(t.per_second / c.per_second for t, c in pairs)
        cpu_to_ceiling[key] = statistics.median(c.cpu_ms / t.cpu_ms for t, c in pairs)
    cpu_ms = {key: statistics.median(t.cpu_ms for t in values) for key, values in turns.items()}
    print(f"  {CEILING}: {rates[CEILING]:,.0f} images/s", flush=True)
    print(f"  {records_key}: {rates[records_key]:,.0f} images/s", flush=True)
    for cache in ("none", "memory"):
        for ordered in (True, False):
            for threads in (0, 2):
                key = f"tf.data cache={cache} ordered={ordered} threads={threads}"
                if key == default_key:
                    print(f"  {key}: {rates[key]:,.0f} images/s", flush=True)
                    continue
                rates[key] = pipeline_rate(root, cache, ordered, threads,
                                           epochs=1 if cache == "none" else 2).per_second
                print(f"  {key}: {rates[key]:,.0f} images/s", flush=True)
    base = rates["image_data_generator"]
    best_plain = max(v for k, v in rates.items() if "cache=none" in k)
    best_cached = max(v for k, v in rates.items() if "cache=memory" in k)
    default_plain = rates[default_key]
    default_cached = rates["tf.data cache=memory ordered=True threads=0"]
    result = {
        "images_per_second": rates,
        "ratio_uncached_default": default_plain / base,
        "ratio_cached_default": default_cached / base,
        "ratio_uncached_best": best_plain / base,
        "ratio_cached_best": best_cached / base,
        "ratio_uncached_to_ceiling": to_ceiling[default_key],
        "ratio_records_to_ceiling": to_ceiling[records_key],
        "cpu_ms_per_image": cpu_ms,
        "cpu_ratio_uncached_to_ceiling": cpu_to_ceiling[default_key],
        "cpu_ratio_records_to_ceiling": cpu_to_ceiling[records_key],
        "turns": {key: [vars(t) for t in values] for key, values in turns.items()},
        "records_images_per_second_per_core": rates[records_key] / (os.cpu_count() or 1),
        "targets": {"uncached": 10, "cached": 30, "uncached_to_ceiling": 0.9},
    }
    summary = (f"bench_input: ImageDataGenerator {base:,.0f} img/s; tf.data"
               f" {default_plain:,.0f} img/s ({default_plain / base:.1f}x, target 10x),"
               f" cached {default_cached:,.0f} img/s ({default_cached / base:.1f}x, target 30x);"
               f" uncached at {to_ceiling[default_key]:.0%} of the decode-and-resize"
               f" ceiling {rates[CEILING]:,.0f} img/s (median of {args.turns} turns; target 90%),"
               f" CPU per image {cpu_ms[default_key]:.3f} ms against its"
               f" {cpu_ms[CEILING]:.3f} ({cpu_to_ceiling[default_key]:.0%});"
               f" from a pack {rates[records_key]:,.0f} img/s"
               f" ({to_ceiling[records_key]:.0%})")
    benchlib.write("input", result, summary, args.out)


if __name__ == "__main__":
    main()
