"""Export of a model as the export tool writes it, without training: a tiny untrained AlexNet
(the project's builder, LRN included) stands in for a trained one; the real images are written
here. Export after a real training run is tests/test_evaluation.py (slow)."""

import json

import pytest
from helpers import make_image_folder, model_config

from alexnet_exp.bundle import ModelBundle, sidecar_path
from alexnet_exp.errors import UserError
from alexnet_exp.export import (
    DEFAULT_TOLERANCE,
    check_parity,
    export_model,
    exported_predictor,
    parity_images,
)

CLASSES = ["apple", "kiwi", "plum"]
RUN_ID = "0123456789abcdef0123"


@pytest.fixture(scope="module")
def bundle():
    import keras

    from alexnet_exp.model import build_alexnet

    keras.utils.set_random_seed(3)
    cfg = model_config("small", input_size=64, filters=[8, 16, 16, 16, 8], fc_units=[32, 32],
                       norm="lrn")
    model = build_alexnet(cfg, len(CLASSES))
    # Spread the logits: an untrained net's near-ties would make top-1 agreement a coin toss.
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 40.0, bias])
    return ModelBundle(model, list(CLASSES), input_size=64, eval_resize=72, source="test",
                       train_run_id=RUN_ID)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("images"),
                             classes={c: 3 for c in CLASSES}, size=(80, 70))
    return root, sorted(str(p) for p in root.rglob("*.jpg"))


@pytest.mark.parametrize(("fmt", "name"), [
    ("keras", "alexnet-0123456789ab.keras"),
    ("savedmodel", "alexnet-0123456789ab_savedmodel"),
    pytest.param("tflite", "alexnet-0123456789ab.tflite", marks=pytest.mark.slow),  # 5 s convert
])
def test_each_format_is_written_whole_with_its_sidecar_and_predicts_as_keras(
        bundle, images, tmp_path, fmt, name):
    (tmp_path / name).mkdir()  # an earlier export of the same run: replaced, not merged into
    (tmp_path / name / "stale.txt").write_text("from the first export")

    path = export_model(bundle, fmt, "none", tmp_path)

    assert path == tmp_path / name and path.exists()
    assert not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, f"{name}.json"]  # no .export-*
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["class_names"] == CLASSES and sidecar["train_run_id"] == RUN_ID
    assert (sidecar["input_size"], sidecar["eval_resize"]) == (64, 72)
    assert (sidecar["format"], sidecar["quantize"]) == (fmt, "none")
    # The exported file itself, loaded afresh, on real images seen as evaluation sees them.
    exported = exported_predictor(path, fmt)
    parity = check_parity(bundle, exported, images[1])
    assert parity.images == 9
    assert parity.max_abs_diff <= DEFAULT_TOLERANCE[fmt]
    assert parity.top1_agreement == 1.0
    if fmt == "keras":  # ... and the check is sharp: a copy with two classes swapped fails it
        swapped = check_parity(bundle, lambda x: exported(x)[:, [1, 0, 2]], images[1])
        assert swapped.max_abs_diff > 0.1 and swapped.top1_agreement < 1.0


def test_an_output_dir_that_cannot_be_a_folder_is_a_user_error(bundle, tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UserError, match=r"output_dir=.*taken/exports cannot hold exports"):
        export_model(bundle, "keras", "none", tmp_path / "taken" / "exports")


def test_parity_images_are_spread_over_the_data_and_decodable(tmp_path):
    root = make_image_folder(tmp_path / "data", classes={"a": 6, "b": 6}, size=(20, 20))
    (root / "a" / "a_000.jpg").write_bytes(b"")  # the first pick, broken: skipped
    # Every third of the 12 sorted files, not the first four (all of class a); the broken
    # pick is dropped, not replaced by its neighbour.
    assert parity_images(str(root), 4) == [str(root / f) for f in ("a/a_003.jpg", "b/b_000.jpg",
                                                                   "b/b_003.jpg")]

    for bad in (None, str(tmp_path / "nowhere")):
        with pytest.raises(UserError, match="the parity check needs real images"):
            parity_images(bad, 4)
    junk = tmp_path / "junk" / "x"
    junk.mkdir(parents=True)
    (junk / "x.jpg").write_text("not an image")
    with pytest.raises(UserError, match="no decodable image"):
        parity_images(str(tmp_path / "junk"), 4)
