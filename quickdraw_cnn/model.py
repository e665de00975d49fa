"""The Labs 21 batch-norm/dropout CNN, taking raw uint8 drawings (0..255, 28x28x1), and its training recipe.

Plain Keras apart from the fused batch norm's TensorFlow op, so `build_cnn` and `compile_for_training`
run on any Keras backend (bench/bench_gpu.py trains them on JAX, on a GPU machine without TensorFlow).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .config import TrainConfig

# 25.6 M multiply-adds forward per 28x28 drawing, ~3x that with the backward pass: for GFLOP/s figures
FLOP_PER_TRAINED_DRAWING = 3 * 2 * 25.6e6


class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, training through TensorFlow's fused kernel (FusedBatchNormV3).

    Keras 3 normalizes a batch with separate ops (cast to float32, moments, scale and shift) and
    differentiates each of them: a third of a training step of this model on the CPU. The fused kernel
    does the forward and the backward pass in one op each, with the same result (the moving variance
    gets the same biased batch variance). Inference, and everything exported, uses the plain layer: the
    weights are the same four per layer, so `model.json` never names this class. Channels-last, default
    options (no renorm, no synchronized statistics).
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # here, so the rest of this module runs on any Keras backend

        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), epsilon=self.epsilon, is_training=True
        )[:3]
        n = tf.cast(tf.size(x) // x.shape[-1], "float32")
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + unbiased_variance * ((n - 1.0) / n) * (1.0 - m))
        return tf.cast(tf.reshape(y, tf.shape(inputs)), self.compute_dtype)


def build_cnn(
    num_classes: int,
    batch_norm: type[layers.BatchNormalization] = layers.BatchNormalization,
    dropout_scale: float = 1.0,
) -> keras.Model:
    """Labs 21 architecture, plus a Rescaling layer so every consumer feeds the same 0..255 pixels.

    Conv16-BN, Conv32-BN, Pool, Drop .2, Conv64-BN x2, Pool, Drop .3, Conv128-BN x2, Pool, Drop .4,
    Dense128-BN, Drop .5, softmax. All convs 3x3 'same', ReLU, he_uniform (444,388 weights at 100 classes).
    Training passes `batch_norm=FusedBatchNormalization` (same weights, faster on the CPU) and may train
    with the dropout rates scaled by `dropout_scale`: dropout has no weights and does nothing at
    inference, so the exported model (built with the defaults) is the same either way.
    """
    if not 0.0 <= dropout_scale <= 1.0:
        raise ValueError(f"dropout_scale must be in [0, 1], got {dropout_scale}")

    def conv(filters: int) -> list[layers.Layer]:
        return [
            layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),
            batch_norm(),
        ]

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="drawing"),
            layers.Rescaling(1.0 / 255.0),
            *conv(16),
            *conv(32),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2 * dropout_scale),
            *conv(64),
            *conv(64),
            layers.MaxPooling2D(2),
            layers.Dropout(0.3 * dropout_scale),
            *conv(128),
            *conv(128),
            layers.MaxPooling2D(2),
            layers.Dropout(0.4 * dropout_scale),
            layers.Flatten(),
            layers.Dense(128, activation="relu", kernel_initializer="he_uniform"),
            batch_norm(),
            layers.Dropout(0.5 * dropout_scale),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="labs21_cnn",
    )


def lr_schedule(peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """Linear warm-up from peak/10 to `peak`, then cosine decay to peak/100 at the last epoch."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(steps_per_epoch * warmup_epochs), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10 if warmup else peak,
        decay_steps=max(1, total - warmup),
        alpha=0.01,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def compile_for_training(
    model: keras.Model,
    config: TrainConfig,
    steps_per_epoch: int,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> keras.Model:
    """`model` compiled with the configured optimizer, schedule, label smoothing and truthfully named
    top-1/top-5 metrics. Plain Keras, so it runs on any Keras backend (bench/bench_gpu.py: JAX)."""
    schedule = lr_schedule(config.learning_rate, steps_per_epoch, config.epochs, config.warmup_epochs)
    if config.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics = [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        ]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        ]
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def mirror_averaged(trunk: keras.Model) -> keras.Model:
    """`trunk` answering for a drawing and its mirror image together: the mean of the two predictions.

    People draw a class facing either way and training mirrors half the drawings, so the two views are
    equally valid, and their errors partly cancel (+0.3 points top-1 on average over twelve models trained
    on 20 real classes, at twice the inference cost: bench/bench_train.py). Plain Keras layers only, so
    model.json, model.h5 and ONNX stay loadable anywhere: the mirror is a fixed, non-trainable 28x28
    permutation (a Dense layer on the image's columns), exact in float32. The trunk's weights are
    shared, not copied.
    """
    drawing = keras.Input(shape=(28, 28, 1), name="drawing")
    columns_last = layers.Permute((1, 3, 2))(drawing)
    mirror = layers.Dense(28, use_bias=False, trainable=False, name="mirror_columns")
    mirrored = layers.Permute((1, 3, 2), name="mirrored")(mirror(columns_last))
    averaged = layers.Average(name="mirror_average")([trunk(drawing), trunk(mirrored)])
    mirror.set_weights([np.eye(28, dtype="float32")[::-1]])
    return keras.Model(drawing, averaged, name=f"{trunk.name}_mirror_averaged")
