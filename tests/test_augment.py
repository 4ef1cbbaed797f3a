"""Augmentation and evaluation crops as the pipeline calls them: on real decoded images, for the
sizes and choices the config offers (conf/model/*.yaml x conf/augment/*.yaml)."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import make_image_folder, model_config
from helpers.configs import augment_config

from alexnet_exp import augment, graphs
from alexnet_exp.decode import decoder

AUGMENTS = ("none", "flip", "paper", "seed")
INPUT = 32


@pytest.mark.parametrize("model", ["paper", "seed", "small"])
def test_stored_and_eval_sizes_for_every_model_and_augment(model):
    """augment=paper crops from the paper's 256/227 resize (256 px at 227), the others train on
    the input size itself; evaluation sees the same resize as training (its centre crop)."""
    size = model_config(model).input_size
    expected_resize = {"paper": 256, "seed": 256, "small": 144}[model]
    for name in AUGMENTS:
        cfg = augment_config(name)
        stored = augment.stored_size(cfg, size)
        resize = augment.eval_resize(size, cfg.crop_scale)
        if name == "paper":
            assert stored == resize == expected_resize
        else:
            assert stored == resize == size
    assert augment.eval_resize(size) == expected_resize  # a model that recorded no crop_scale


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tf.Tensor:
    """A real JPEG through the pipeline's own decoder, at paper augment's stored size."""
    root = make_image_folder(tmp_path_factory.mktemp("photo"), classes={"cat": 1}, size=(50, 40))
    stored = augment.stored_size(augment_config("paper"), INPUT)
    image, _ = decoder(stored)(tf.constant(str(root / "cat" / "cat_000.jpg")), tf.constant(1),
                               tf.constant(0))
    return image



@pytest.mark.parametrize("name", AUGMENTS)
def test_train_transform_gives_float_pixels_at_the_input_size_reproducibly(photo, name):
    cfg = augment_config(name)
    stored = augment.stored_size(cfg, INPUT)
    image = tf.image.resize(photo, [stored, stored], method="nearest")
    basis = augment.lighting_basis(photo.numpy()[np.newaxis])
    transform = augment.train_transform(cfg, INPUT, basis)
    out = [transform(image, tf.constant([s, 0])).numpy() for s in range(8)]

    assert all(o.shape == (INPUT, INPUT, 3) and o.dtype == np.float32 for o in out)
    assert all(o.min() >= 0.0 and o.max() <= 255.0 for o in out)
    np.testing.assert_array_equal(out[5], transform(image, tf.constant([5, 0])).numpy())
    distinct = len({o.tobytes() for o in out})
    assert distinct == 1 if name == "none" else distinct > 1
    # The pipeline's images have a static shape; the model must see one too (a dynamic one
    # trains 2.5x slower).
    traced = graphs.traced(transform).get_concrete_function(
        tf.TensorSpec([stored, stored, 3], tf.uint8), tf.TensorSpec([2], tf.int64))
    assert traced.output_shapes == tf.TensorShape([INPUT, INPUT, 3])


def test_paper_crops_are_windows_of_the_resize_flipped_or_not(photo):
    """Without colour noise every paper crop is an input-size window of the stored image, some
    of them mirrored: the crop and the flip move pixels, they never change them."""
    cfg = augment_config("paper", pca_std=0.0)
    pixels = photo.numpy().astype(np.float32)
    stored = pixels.shape[0]
    windows = {}
    for y in range(stored - INPUT + 1):
        for x in range(stored - INPUT + 1):
            window = pixels[y:y + INPUT, x:x + INPUT]
            windows[window.tobytes()] = "as is"
            windows[window[:, ::-1].tobytes()] = "flipped"
    transform = augment.train_transform(cfg, INPUT, None)
    seen = [windows.get(transform(photo, tf.constant([s, 1])).numpy().tobytes())
            for s in range(16)]
    assert None not in seen
    assert set(seen) == {"as is", "flipped"}


def test_colour_noise_shifts_every_pixel_of_an_image_by_one_rgb_offset(photo):
    """PCA lighting noise (paper 4.1) is one colour cast per image along the data's principal
    colour axes, not per-pixel noise; the same seed draws the same crop with and without it."""
    basis = augment.lighting_basis(photo.numpy()[np.newaxis])
    plain = augment.train_transform(augment_config("paper", pca_std=0.0), INPUT, None)
    noisy = augment.train_transform(augment_config("paper", pca_std=0.5), INPUT, basis)
    image = tf.cast(tf.clip_by_value(tf.cast(photo, tf.int32), 60, 190), tf.uint8)  # no clipping
    for seed in range(4):
        delta = noisy(image, tf.constant([seed, 9])).numpy() - plain(image, tf.constant([seed, 9]))
        shift = delta[0, 0]
        np.testing.assert_allclose(delta, np.broadcast_to(shift, delta.shape), atol=1e-3)
        assert np.abs(shift).max() > 0.01
    with pytest.raises(ValueError, match="lighting basis"):
        augment.train_transform(augment_config("paper"), INPUT, None)


def test_seed_rotation_and_zoom_fill_with_the_nearest_pixels_not_black():
    """ImageDataGenerator's default fill: a flat image stays flat under any rotation or zoom
    (a constant fill would put black corners into every rotated training image)."""
    flat = tf.fill([INPUT, INPUT, 3], tf.constant(200, tf.uint8))
    transform = augment.train_transform(augment_config("seed", rotation_degrees=45.0, zoom=0.5),
                                        INPUT, None)
    for seed in range(4):
        np.testing.assert_allclose(transform(flat, tf.constant([seed, 3])).numpy(), 200.0,
                                   atol=1e-3)


@pytest.mark.parametrize("name", AUGMENTS)
def test_eval_transform_is_the_centre_crop_of_the_training_resize(photo, name):
    cfg = augment_config(name)
    stored = augment.stored_size(cfg, INPUT)
    image = tf.image.resize(photo, [stored, stored], method="nearest")
    out = augment.eval_transform(cfg, INPUT)(image).numpy()
    offset = (stored - INPUT) // 2
    expected = image.numpy()[offset:offset + INPUT, offset:offset + INPUT].astype(np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_lighting_basis_finds_the_axis_the_colours_vary_along():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(4, 8, 8, 1))
    images = np.concatenate([grey, grey, np.full_like(grey, 128)], axis=-1).astype(np.uint8)
    basis = augment.lighting_basis(images)
    top = basis.eigenvectors[:, np.argmax(basis.eigenvalues)]
    np.testing.assert_allclose(np.abs(top), [2 ** -0.5, 2 ** -0.5, 0.0], atol=1e-5)
    # variance along (1, 1, 0) / sqrt(2) of pixels scaled to [0, 1]: twice one channel's
    assert basis.eigenvalues.max() == pytest.approx(2 * np.var(grey / 255.0, ddof=1), rel=1e-4)
    np.testing.assert_allclose(basis.eigenvectors.T @ basis.eigenvectors, np.eye(3), atol=1e-5)


# ------------------------------------------------------------------------ mixup and cutmix

COLOURS = np.array([10.0, 60.0, 150.0, 240.0], np.float32)  # one flat grey per image


def flat_batch():
    images = tf.constant(np.broadcast_to(COLOURS[:, None, None, None], (4, 16, 16, 3)).copy())
    return images, tf.one_hot([0, 1, 2, 3], 4)


def mixed(**mixes):
    from alexnet_exp.config import MixConfig

    cfg = augment_config("none", **{k: MixConfig(*v) for k, v in mixes.items()})
    images, labels = augment.batch_mix(cfg)(*flat_batch(), tf.constant([3, 4], tf.int64))
    return images.numpy(), labels.numpy()


def test_mixup_blends_each_image_with_its_mirror_in_the_ratio_of_its_labels():
    images, labels = mixed(mixup=(0.4, 1.0))
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    assert (labels.max(axis=1) < 1.0).all()  # a Beta(0.4) draw is never exactly 0 or 1
    for i in range(4):
        j = 3 - i  # the mirrored place in the batch
        assert set(np.flatnonzero(labels[i])) == {i, j}
        np.testing.assert_allclose(images[i], labels[i, i] * COLOURS[i]
                                   + labels[i, j] * COLOURS[j], rtol=1e-5)


def test_cutmix_pastes_a_box_of_the_mirror_image_and_labels_it_by_area():
    images, labels = mixed(cutmix=(1.0, 1.0))
    for i in range(4):
        j = 3 - i
        pasted = np.isclose(images[i, :, :, 0], COLOURS[j])
        assert (pasted | np.isclose(images[i, :, :, 0], COLOURS[i])).all()
        assert 0 < pasted.sum() < 16 * 16
        rows, cols = np.nonzero(pasted)  # one rectangle
        assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        np.testing.assert_allclose(labels[i, j], pasted.mean(), rtol=1e-5)
        np.testing.assert_allclose(labels[i, i], 1 - pasted.mean(), rtol=1e-5)


def test_a_mix_off_or_never_drawn_is_no_mix_and_the_same_seed_mixes_alike():
    from alexnet_exp.config import MixConfig

    assert augment.batch_mix(augment_config("none")) is None
    never = MixConfig(alpha=0.4, prob=0.0)
    assert augment.batch_mix(augment_config("none", mixup=never, cutmix=never)) is None
    first, again = mixed(mixup=(0.4, 1.0), cutmix=(1.0, 1.0)), mixed(mixup=(0.4, 1.0),
                                                                    cutmix=(1.0, 1.0))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_progressive_batches_take_each_epochs_size_from_their_place_in_the_stream():
    """Three batches an epoch, resumed at epoch 2 of 3 (0-based 1): 48 px for its batches,
    then 64 for the last epoch and any batch read past it; a grey image stays that grey."""
    images = tf.fill([4, 64, 64, 3], 100.0)
    batches = tf.data.Dataset.from_tensors((images, tf.ones([4, 2]))).repeat(3).repeat()
    resized = augment.resized_by_epoch(batches, [32, 48, 64], steps=3, first_epoch=1)
    seen = [(x.shape[1], x.shape[2]) for x, _ in resized.take(9).as_numpy_iterator()]
    assert seen == [(48, 48)] * 3 + [(64, 64)] * 6
    first, labels = next(iter(resized))
    np.testing.assert_allclose(first.numpy(), 100.0, atol=1e-3)
    assert labels.shape == (4, 2)
