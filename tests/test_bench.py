"""The benchmark scripts keep working (the speed targets themselves live in the scripts, never
in a timed test): one runs end to end on a tiny folder, the FLOP count is checked by hand."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_scaling  # noqa: E402
import bench_time_to_accuracy  # noqa: E402
import bench_train  # noqa: E402
import make_synthetic_folder  # noqa: E402


def test_forward_flops_counts_conv_and_dense_multiply_adds():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="valid")(inputs)  # 8x8x4 outputs, 3x3x3 each
    x = keras.layers.MaxPooling2D(2)(x)  # free
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)  # 64 -> 5
    model = keras.Model(inputs, outputs)
    assert bench_train.forward_flops(model) == 2 * (8 * 8 * 4 * 3 * 3 * 3) + 2 * (64 * 5)


def test_repeated_links_every_image_within_its_class(tmp_path, tiny_data):
    copies = bench_scaling.repeated(tiny_data, 4, tmp_path / "x4")
    for folder in tiny_data.iterdir():
        linked = sorted((copies / folder.name).iterdir())
        assert len(linked) == 4 * len(list(folder.iterdir()))
        assert all(p.resolve().parent == folder.resolve() for p in linked)


def test_the_synthetic_folder_is_jpegs_in_class_folders_the_same_every_time(tmp_path,
                                                                            tiny_data):
    from PIL import Image

    out = make_synthetic_folder.build(tiny_data, tmp_path / "synth", classes=3, per_class=4,
                                      size=32, workers=1)
    files = sorted(out.glob("*/*.jpg"))
    assert [p.parent.name for p in files] == ["class_000"] * 4 + ["class_001"] * 4 + [
        "class_002"] * 4
    with Image.open(files[0]) as image:
        assert (image.format, image.size) == ("JPEG", (32, 32))
    first = {p.relative_to(out): p.read_bytes() for p in files}
    files[5].unlink()  # a build killed half-way: the rerun writes what is missing, the same
    (out / ".complete").unlink()
    make_synthetic_folder.build(tiny_data, out, classes=3, per_class=4, size=32, workers=1)
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.glob("*/*.jpg"))} == first
    assert len(set(first.values())) == 12  # every image its own crop and colours


@pytest.mark.slow
def test_bench_input_writes_json_and_ends_with_its_summary(tmp_path, tiny_data):
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_input.py"), "--data",
                           str(tiny_data), "--out", str(tmp_path), "--turns", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "input.json").read_text())
    assert done.stdout.strip().splitlines()[-1] == result["summary"]
    assert result["summary"].startswith("bench_input: ImageDataGenerator")
    rates = result["images_per_second"]
    assert rates["image_data_generator"] > 0 and len(rates) == 11
    turns = result["turns"]  # each ratio is the median of the turns' own ratios (two here)
    ceiling = turns["decode_jpeg + resize ceiling"]
    for key, ratio in (("tf.data cache=none ordered=True threads=0", "uncached_to_ceiling"),
                       ("tf.data records cache=none", "records_to_ceiling")):
        assert len(turns[key]) == 2 and rates[key] == max(t["per_second"] for t in turns[key])
        pairs = list(zip(turns[key], ceiling, strict=True))
        assert result[f"ratio_{ratio}"] == pytest.approx(
            sum(t["per_second"] / c["per_second"] for t, c in pairs) / 2)
        # the CPU per image: the ceiling's over the pipeline's, a turn's own ratio
        assert all(t["cpu_ms"] > 0 for t in turns[key])
        assert result[f"cpu_ratio_{ratio}"] == pytest.approx(
            sum(c["cpu_ms"] / t["cpu_ms"] for t, c in pairs) / 2)
    assert " ms against its " in result["summary"]
    assert result["ratio_cached_default"] == pytest.approx(
        rates["tf.data cache=memory ordered=True threads=0"] / rates["image_data_generator"])


def test_bench_time_to_accuracy_takes_overrides_after_seeds_but_not_an_options_value():
    parser = bench_time_to_accuracy.build_parser()
    argv = ["--data", "/photos/a=b", "--seeds", "1", "2", "model.head=gap", "--name", "x=y",
            "trainer.epochs=3"]
    args = parser.parse_args(bench_time_to_accuracy.overrides_first(parser, argv))
    assert args.data == Path("/photos/a=b") and args.name == "x=y"
    assert args.seeds == [1, 2]
    assert args.overrides == ["model.head=gap", "trainer.epochs=3"]


@pytest.mark.slow
def test_bench_time_to_accuracy_logs_each_epoch_and_writes_the_curve(tmp_path, tiny_data):
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_time_to_accuracy.py"),
                           "--data", str(tiny_data), "--out", str(tmp_path), "--seeds", "7",
                           "trainer.epochs=2", "model.input_size=64", "trainer.batch_size=8",
                           "optimizer.learning_rate=0.001"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert done.stdout.strip().splitlines()[-1] == result["summary"]
    log = tmp_path / "time_to_accuracy_seed7.log"
    assert f"seed 7: training, a line per epoch in {log}" in done.stdout
    epochs = [line for line in log.read_text().splitlines() if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    (run,) = result["runs"]
    assert [point["epoch"] for point in run["curve"]] == [1, 2]
    assert run["run_params"]["seed"] == "7" and not result["met"]
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0
