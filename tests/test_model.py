"""The training-only fused batch norm must be the plain Keras layer, faster: same outputs, statistics, gradients."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("shape", [(8, 7, 7, 5), (16, 6)])  # after a conv, after the dense layer
def test_fused_batch_norm_trains_like_the_plain_layer(precision: str, shape: tuple[int, ...]) -> None:
    import keras
    import tensorflow as tf

    from quickdraw_cnn.model import FusedBatchNormalization

    keras.mixed_precision.set_global_policy(precision)
    try:
        rng = np.random.default_rng(0)
        x = tf.cast(
            tf.constant(rng.normal(1.0, 3.0, shape).astype(np.float32)),
            keras.mixed_precision.global_policy().compute_dtype,
        )
        upstream = tf.constant(rng.normal(size=shape).astype(np.float32))  # a loss whose gradient is not zero
        plain, fused = keras.layers.BatchNormalization(), FusedBatchNormalization()
        plain.build(shape)
        fused.build(shape)
        plain.gamma.assign(rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32))
        plain.beta.assign(rng.normal(size=shape[-1]).astype(np.float32))
        fused.set_weights(plain.get_weights())
        results = []
        for layer in (plain, fused):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
            grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
            results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
        tol = 1e-5 if precision == "float32" else 2e-2
        for a, b in zip(*results):
            a, b = (np.asarray(tf.cast(v, tf.float32)) for v in (a, b))
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, np.abs(a).max()))
        assert results[1][0].dtype == results[0][0].dtype
        assert not np.allclose(np.asarray(fused.moving_variance), 1.0)  # the statistics did move
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_exported_architecture_names_only_plain_keras_layers() -> None:
    """The app team loads model.json with stock Keras: the training-only class must never appear in it."""
    import keras

    from quickdraw_cnn.model import FusedBatchNormalization, build_cnn
    from quickdraw_cnn.train import export_copy

    trained = build_cnn(7, batch_norm=FusedBatchNormalization)
    shipped = export_copy(trained, "labs21", 7)
    assert "FusedBatchNormalization" not in shipped.to_json()
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in shipped.layers) == 7
    for a, b in zip(trained.weights, shipped.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
