"""Training mechanics: the precision choice, stopping rules, best-weights restore."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_exp import fit_callbacks, training
from alexnet_exp import model as alexnet
from alexnet_exp.config import OptimizerConfig, TrainerConfig
from alexnet_exp.resume import ResumePoint


@pytest.mark.parametrize(
    ("requested", "has_gpu", "cpu_bf16", "policy"),
    [
        ("auto", True, False, "mixed_float16"),
        ("auto", True, True, "mixed_float16"),
        ("auto", False, True, "mixed_bfloat16"),
        ("auto", False, False, "float32"),
        ("fp32", True, True, "float32"),
        ("bf16", False, False, "mixed_bfloat16"),
        ("fp16", False, False, "mixed_float16"),
    ],
)
def test_precision_choice(requested, has_gpu, cpu_bf16, policy):
    assert training.resolve_precision(requested, has_gpu, cpu_bf16) == policy


def test_avx512_bf16_is_read_from_cpu_flags(tmp_path):
    with_flag, without = tmp_path / "a", tmp_path / "b"
    with_flag.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu avx2\n")
    assert training.cpu_has_avx512_bf16(str(with_flag))
    assert not training.cpu_has_avx512_bf16(str(without))
    assert not training.cpu_has_avx512_bf16(str(tmp_path / "missing"))


def test_auto_precision_uses_the_device_list(monkeypatch):
    """The GPU branch, checked on a machine without one by stubbing TF's device list."""
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
    grown = []
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda device, flag: grown.append((device, flag)))
    try:
        policy = training.configure_runtime(TrainerConfig(precision="auto"), seed=1)
        assert policy == "mixed_float16"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert grown == [("/physical_device:GPU:0", True)]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def tiny_problem(n=64, seed=0):
    """Two separable classes of 8x8 images, batched as the real pipeline batches them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.uniform(0, 60, (n, 8, 8, 3)).astype(np.float32) + labels[:, None, None, None] * 150
    onehot = np.eye(2, dtype=np.float32)[labels]
    return tf.data.Dataset.from_tensor_slices((images, onehot)).batch(16)


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def run_fit(tmp_path, schedule=None, **trainer_overrides):
    trainer = dataclasses.replace(TrainerConfig(epochs=30, verbose=0, tensorboard=False,
                                                early_stopping_patience=None),
                                  **trainer_overrides)
    model = tiny_model()
    training.compile_model(model, OptimizerConfig(name="adam", learning_rate=0.05,
                                               weight_decay=0.0), trainer)
    seen = []
    result = training.fit(model, tiny_problem(), tiny_problem(seed=1), 64, trainer, tmp_path,
                       on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics)),
                       schedule=schedule)
    return model, result, seen


def test_target_val_accuracy_stops_training(tmp_path):
    _, result, seen = run_fit(tmp_path, target_val_accuracy=0.9)
    assert result.stopped_early and len(seen) < 30
    assert seen[-1][1]["val_accuracy"] >= 0.9
    assert all(m["val_accuracy"] < 0.9 for _, m in seen[:-1])


def test_epoch_hook_gets_every_metric_once_per_epoch(tmp_path):
    _, result, seen = run_fit(tmp_path, epochs=3)
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    for _, metrics in seen:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                "images_per_second"} <= set(metrics)
        assert metrics["lr"] == pytest.approx(0.05)


def test_model_ends_with_the_best_epochs_weights(tmp_path):
    model, result, seen = run_fit(tmp_path, epochs=4)
    assert result.checkpoint is not None and result.checkpoint.exists()
    best = max(m["val_accuracy"] for _, m in seen)
    assert result.best_val_accuracy == pytest.approx(best)
    _, accuracy = model.evaluate(tiny_problem(seed=1), verbose=0)
    assert accuracy == pytest.approx(best)


def test_fit_sets_the_scheduled_rate_every_step_and_logs_it_per_epoch(tmp_path):
    # 64 images in batches of 16: 4 steps per epoch; epoch e starts at step 4e
    schedule = fit_callbacks.StepSchedule("cosine", 0.05, epochs=3, steps_per_epoch=4)
    model, _, seen = run_fit(tmp_path, schedule=schedule, epochs=3, reduce_lr_patience=1,
                             checkpoint=False)  # no best-epoch restore of the optimizer
    assert [m["lr"] for _, m in seen] == pytest.approx([schedule.rate(4 * e) for e in range(3)])
    final = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert final == pytest.approx(schedule.rate(11), rel=1e-5)  # the last step's rate


def test_optimizer_follows_config():
    sgd = training.build_optimizer(OptimizerConfig())
    assert isinstance(sgd, keras.optimizers.SGD)
    assert (sgd.momentum, sgd.weight_decay) == (0.9, pytest.approx(5e-4))
    adam = training.build_optimizer(OptimizerConfig(name="adam", learning_rate=1e-3,
                                                    weight_decay=0))
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None


def test_tensorboard_and_mlflow_count_the_same_epoch_with_the_same_step(tmp_path):
    """Epoch n ("Epoch n/N") is step n in TensorBoard's event files as in MLflow's metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, seen = run_fit(tmp_path, epochs=2, tensorboard=True)
    hook_steps = [epoch for epoch, _ in seen]
    for split in ("train", "validation"):
        events = EventAccumulator(str(tmp_path / "tensorboard" / split))
        events.Reload()
        tag = "epoch_loss"
        steps = [e.step for e in events.Tensors(tag)] or [e.step for e in events.Scalars(tag)]
        assert steps == hook_steps == [1, 2], split


def test_adamw_decays_weights_but_never_batchnorm_or_biases_also_after_a_reload(tmp_path):
    """One step with zero gradients moves only what weight decay moves: kernels shrink by
    lr * weight_decay, biases and BatchNorm's gamma/beta stay. Keras does not save which
    variables are left out of the decay, so the reloaded checkpoint is stepped again."""
    from helpers import model_config

    net = alexnet.build_alexnet(model_config("small", input_size=64, norm="bn"), 3)
    for layer in net.layers:  # non-zero biases and beta, so "unchanged" can be told apart
        for weight in layer.weights:
            if weight.name in ("bias", "beta"):
                weight.assign(tf.fill(weight.shape, 0.5))
    training.compile_model(net, OptimizerConfig(name="adamw", learning_rate=0.1,
                                             weight_decay=0.5), TrainerConfig())

    def step_and_compare(model):
        before = {v.path: v.numpy() for v in model.trainable_variables}
        model.optimizer.apply_gradients(
            [(tf.zeros_like(v), v) for v in model.trainable_variables])
        for v in model.trainable_variables:
            kept = v.name in ("bias", "gamma", "beta")
            expected = before[v.path] * (1.0 if kept else 1 - 0.1 * 0.5)
            np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, err_msg=v.path)

    step_and_compare(net)
    net.save(tmp_path / "checkpoint.keras")
    reloaded = alexnet.load(tmp_path / "checkpoint.keras")
    assert type(reloaded.optimizer) is alexnet.AdamW
    step_and_compare(reloaded)


def raw_steps_and_their_average(momentum: float, steps_per_epoch: int = 4):
    """The weights after each step of one epoch of ``run_fit``'s problem, replayed batch by
    batch on a twin without the average (the average never changes the steps), and the
    moving average of them folded by hand: the first step's weights, then
    ``m * average + (1 - m) * weights`` after every later step."""
    twin = tiny_model()
    training.compile_model(twin, OptimizerConfig(name="sgd", learning_rate=0.5, weight_decay=0.0),
                        TrainerConfig())
    average = None
    for images, labels in tiny_problem().take(steps_per_epoch):
        twin.train_on_batch(images, labels)
        weights = [v.numpy() for v in twin.trainable_variables]
        average = weights if average is None else [
            momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    return weights, average


def test_optimizer_ema_validates_keeps_and_ends_with_the_average_of_the_weights(tmp_path):
    trainer = TrainerConfig(epochs=1, verbose=0, tensorboard=False, early_stopping_patience=None)
    model = tiny_model()
    training.compile_model(model, OptimizerConfig(name="sgd", learning_rate=0.5, weight_decay=0.0,
                                               ema=0.6), trainer)
    point = ResumePoint(run_id=None, directory=tmp_path / "run")
    point.directory.mkdir()
    result = training.fit(model, tiny_problem(), tiny_problem(seed=1), 64, trainer, tmp_path,
                       point=point)
    raw, average = raw_steps_and_their_average(0.6)
    assert not all(np.allclose(r, a) for r, a in zip(raw, average, strict=True))
    # the model ends with the average (through the best-weights file) ...
    for got, want in zip(model.trainable_variables, average, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    # ... which is what validation measured
    val_loss, _ = model.evaluate(tiny_problem(seed=1), verbose=0)
    assert result.history[0]["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    # the epoch checkpoint keeps the raw weights and the average apart, so a resumed run
    # trains on from the raw weights and continues the same average
    reloaded = alexnet.load(point.directory / point.model_file)
    assert (reloaded.optimizer.use_ema, reloaded.optimizer.ema_momentum) == (True, 0.6)
    for got, want in zip(reloaded.trainable_variables, raw, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    for got, want in zip(reloaded.optimizer._model_variables_moving_average, average,
                         strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_without_a_best_weights_file_the_model_still_ends_with_the_average(tmp_path):
    trainer = TrainerConfig(epochs=1, verbose=0, tensorboard=False, early_stopping_patience=None,
                            checkpoint=False)
    model = tiny_model()
    training.compile_model(model, OptimizerConfig(name="sgd", learning_rate=0.5, weight_decay=0.0,
                                               ema=0.6), trainer)
    training.fit(model, tiny_problem(), tiny_problem(seed=1), 64, trainer, tmp_path)
    _, average = raw_steps_and_their_average(0.6)
    for got, want in zip(model.trainable_variables, average, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_val_tta_flip_scores_each_image_and_its_mirror_with_the_average_swapped_in(tmp_path):
    trainer = TrainerConfig(epochs=1, verbose=0, tensorboard=False, early_stopping_patience=None,
                            val_tta="flip")
    model = tiny_model()
    training.compile_model(model, OptimizerConfig(name="sgd", learning_rate=0.5, weight_decay=0.0,
                                               ema=0.6), trainer)
    result = training.fit(model, tiny_problem(), tiny_problem(seed=1), 64, trainer, tmp_path)
    images = np.concatenate([x for x, _ in tiny_problem(seed=1).as_numpy_iterator()])
    labels = np.concatenate([y for _, y in tiny_problem(seed=1).as_numpy_iterator()])
    # the model now holds the average of the weights (best epoch = the only one)
    plain = model.predict(images, verbose=0)
    probs = (plain + model.predict(images[:, :, ::-1], verbose=0)) / 2
    assert not np.allclose(plain, probs)  # the mirror images do change the answer
    expected_loss = float(np.mean(keras.losses.categorical_crossentropy(labels, probs)))
    assert result.history[0]["val_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result.history[0]["val_accuracy"] == pytest.approx(
        np.mean(probs.argmax(1) == labels.argmax(1)))
    # the validation report after training scores the same two views
    keyed = tf.data.Dataset.from_tensor_slices((images, np.arange(len(images)))).batch(16)
    predicted, keys = training.predict_labels(model, keyed, flip=True)
    np.testing.assert_array_equal(predicted, probs.argmax(1))
    np.testing.assert_array_equal(keys, np.arange(len(images)))
