"""AlexNet as a Keras functional model, every layer choice read from :class:`ModelConfig`.

The model takes raw pixel values (0..255, any float or int dtype) and scales them itself, so a
logged or exported model needs no preprocessing on the client side. Its output is softmax
probabilities in float32 whatever the mixed-precision policy.
"""

import keras
import tensorflow as tf

from alexnet_exp.config import ModelConfig, pool_window


@keras.saving.register_keras_serializable(package="alexnet_exp")
class LocalResponseNormalization(keras.layers.Layer):
    """Paper section 3.3: ``b = a / (k + alpha * sum_{n neighbouring channels} a^2) ** beta``.

    A registered layer rather than a ``Lambda`` so that ``.keras`` files reload with
    ``safe_mode=True``. The sum runs in float32 because the squares overflow bf16/fp16 ranges.
    """

    def __init__(self, k=2.0, n=5, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.k, self.n, self.alpha, self.beta = float(k), int(n), float(alpha), float(beta)

    def call(self, inputs):
        normalized = tf.nn.local_response_normalization(
            tf.cast(inputs, tf.float32),
            depth_radius=self.n // 2,
            bias=self.k,
            alpha=self.alpha,
            beta=self.beta,
        )
        return tf.cast(normalized, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "k": self.k, "n": self.n, "alpha": self.alpha,
                "beta": self.beta}


@keras.saving.register_keras_serializable(package="alexnet_exp")
class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW (decoupled weight decay, Loshchilov & Hutter 2019) that never decays
    BatchNorm's scale and shift or any bias, as the recipes that use it intend.

    Keras keeps ``exclude_from_weight_decay`` out of the optimizer's config, so a checkpoint
    loaded to resume would decay them again; here the names are part of the config.
    """

    def __init__(self, *args, no_decay=("bias", "gamma", "beta"), **kwargs):
        super().__init__(*args, **kwargs)
        self.no_decay = list(no_decay)
        self.exclude_from_weight_decay(var_names=self.no_decay)

    def get_config(self):
        return {**super().get_config(), "no_decay": self.no_decay}


def _norm_layer(cfg: ModelConfig, name: str):
    if cfg.norm == "bn":
        # Under a tf.distribute strategy, batch statistics over the global batch, not each
        # replica's slice of it (which would make the result depend on the replica count).
        return keras.layers.BatchNormalization(momentum=cfg.bn_momentum, name=name,
                                               synchronized=tf.distribute.has_strategy())
    if cfg.norm == "lrn":
        lrn = cfg.lrn
        return LocalResponseNormalization(lrn.k, lrn.n, lrn.alpha, lrn.beta, name=name)
    return None


def build_alexnet(cfg: ModelConfig, num_classes: int, name: str | None = None,
                  any_size: bool = False) -> keras.Model:
    """Conv stack (conv -> activation -> norm -> pool), then dropout + FC layers, softmax.

    ``any_size``: the input takes images of any height and width (``model.head=gap`` only),
    for progressive resizing; its weights fit the fixed-size model (:func:`at_input_size`).
    """
    side = None if any_size else cfg.input_size
    inputs = keras.Input((side, side, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    pool_size, pool_stride = pool_window(cfg)
    for i, filters in enumerate(cfg.filters):
        n = i + 1
        x = keras.layers.Conv2D(
            filters,
            cfg.kernels[i],
            strides=cfg.strides[i],
            padding=cfg.padding[i],
            groups=cfg.conv_groups if cfg.grouped[i] else 1,
            activation=cfg.activation,
            kernel_initializer=cfg.initializer,
            name=f"conv{n}",
        )(x)
        norm = _norm_layer(cfg, f"norm{n}") if cfg.norm_after[i] else None
        if norm is not None:
            x = norm(x)
        if cfg.pool_after[i]:
            x = keras.layers.MaxPooling2D(pool_size, pool_stride, name=f"pool{n}")(x)
    if cfg.head == "gap":  # one average per channel: no 4096-wide layer on the whole map
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(cfg.fc_units):
        n = len(cfg.filters) + i + 1
        if cfg.dropout_rate > 0:
            x = keras.layers.Dropout(cfg.dropout_rate, name=f"dropout{n}")(x)
        x = keras.layers.Dense(units, activation=cfg.activation,
                               kernel_initializer=cfg.initializer, name=f"fc{n}")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name or f"alexnet_{cfg.name}")


def at_input_size(model: keras.Model, cfg: ModelConfig) -> keras.Model:
    """``model`` (built with ``any_size``) as the fixed ``model.input_size`` model every run
    logs, with the same weights: eval, export and serving read the size from its input."""
    if model.input_shape[1] is not None:
        return model
    fixed = build_alexnet(cfg, model.output_shape[-1], name=model.name)
    fixed.set_weights(model.get_weights())
    return fixed


def _float32_policies(node):
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy":
            return {**node, "config": {**node.get("config", {}), "name": "float32"}}
        return {k: _float32_policies(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_policies(v) for v in node]
    return node


def as_float32(model: keras.Model) -> keras.Model:
    """A float32 copy of a mixed-precision model, for logging, serving and export.

    Mixed precision is a training-time speed device (the weights are float32 already); an
    inference model in float32 runs everywhere, converts to TFLite, and gives the same
    probabilities in every runtime.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    clone = keras.Model.from_config(_float32_policies(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def custom_objects() -> dict[str, type]:
    """Our layers (and optimizer) by registered name: what a loader of a saved AlexNet needs.

    Keras does not import a custom layer's module when it loads a model (only its own
    packages), so whoever loads one hands these over: :func:`load` for a ``.keras`` file, the
    bundle for a logged model, the sync command for a model buffered during an outage.
    """
    return {keras.saving.get_registered_name(c): c for c in (LocalResponseNormalization, AdamW)}


def load(path) -> keras.Model:
    """A ``.keras`` file this package wrote (checkpoint, export, buffered model), with
    ``safe_mode`` on: no code in the file runs, our layers come from here."""
    return keras.saving.load_model(path, safe_mode=True, custom_objects=custom_objects())


def model_summary_text(model) -> str:
    """Keras' summary table as text (logged with the run, printed by a dry run)."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, line_break=True: lines.append(line))
    return "\n".join(lines)
