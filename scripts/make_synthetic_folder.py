"""Build an ImageNet-100-sized class-folder set from a small one: N images over C classes.

Each image is a random crop (40-100% of the area, aspect 3/4..4/3) of a photo of ``--source``,
maybe mirrored, its colours scaled per channel by 0.8..1.2, resized to ``--size`` and encoded
as a JPEG of quality 90: real photographic content at real JPEG sizes (100 classes x 1,000
images of 224 px take ~2 GB), for timing and memory, not accuracy (class c's photos are drawn
from every source class). Deterministic per (``--seed``, class, index), and resumable: files
already written are kept, and a ``.complete`` file says the set is whole.

    python scripts/make_synthetic_folder.py --out /tmp/synthetic100k --classes 100 --per-class 1000
"""

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import benchlib
import numpy as np
from PIL import Image


def image_path(out: Path, label: int, index: int) -> Path:
    return out / f"class_{label:03d}" / f"img_{index:05d}.jpg"


def make_one(sources: list[str], out: Path, size: int, seed: int, label: int, index: int):
    target = image_path(out, label, index)
    if target.exists():
        return
    rng = np.random.default_rng([seed, label, index])
    with Image.open(sources[rng.integers(len(sources))]) as photo:
        photo = photo.convert("RGB")
        width, height = photo.size
        area = width * height * rng.uniform(0.4, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = int(min(width, round(np.sqrt(area * aspect))))
        h = int(min(height, round(np.sqrt(area / aspect))))
        x, y = rng.integers(width - w + 1), rng.integers(height - h + 1)
        crop = photo.crop((x, y, x + w, y + h)).resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(crop, np.float32) * rng.uniform(0.8, 1.2, 3)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    image.save(partial, "JPEG", quality=90)
    partial.rename(target)  # a killed build leaves no half-written JPEG under its final name


def _make_class(args) -> int:
    sources, out, size, seed, label, per_class = args
    (out / f"class_{label:03d}").mkdir(parents=True, exist_ok=True)
    for index in range(per_class):
        make_one(sources, out, size, seed, label, index)
    return label


def build(source: Path, out: Path, classes: int, per_class: int, size: int = 224,
          seed: int = 0, workers: int | None = None) -> Path:
    """Write the set (what is there already is kept) and mark it complete."""
    params = {"source": str(source), "classes": classes, "per_class": per_class, "size": size,
              "seed": seed}
    marker = out / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return out
    sources = sorted(str(p) for p in source.glob("*/*") if p.suffix.lower() in
                     (".jpg", ".jpeg", ".png"))
    if not sources:
        raise SystemExit(f"{source} holds no class folders of JPEG or PNG images")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(sources, out, size, seed, label, per_class) for label in range(classes)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for _ in pool.map(_make_class, jobs):
            pass
    marker.write_text(json.dumps(params))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=benchlib.FLOWERS_224,
                        help=f"class folders to draw photos from ({benchlib.FLOWERS_224})")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    args = parser.parse_args()
    out = build(benchlib.require_data(args.source), args.out, args.classes, args.per_class,
                args.size, args.seed, args.workers)
    print(f"make_synthetic_folder: {args.classes * args.per_class:,} images in {args.classes}"
          f" classes under {out}")


if __name__ == "__main__":
    main()
