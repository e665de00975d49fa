"""Training-time model changes (fused batch norm, scaled dropout) must leave the exported model unchanged."""

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

    trained = build_cnn(7, batch_norm=FusedBatchNormalization, dropout_scale=0.0)
    shipped = export_copy(trained, "labs21", 7)
    assert "FusedBatchNormalization" not in shipped.to_json()
    assert [layer.rate for layer in shipped.layers if isinstance(layer, keras.layers.Dropout)] == [0.2, 0.3, 0.4, 0.5]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in shipped.layers) == 7
    for a, b in zip(trained.weights, shipped.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mirror_averaged_model_means_the_drawing_and_its_mirror() -> None:
    """--tta flip: the shipped model's answer is the mean of the CNN's for x and x mirrored left-right."""
    import keras

    from quickdraw_cnn.model import FusedBatchNormalization, build_cnn
    from quickdraw_cnn.train import export_copy

    x = np.random.default_rng(1).integers(0, 256, size=(6, 28, 28, 1)).astype("float32")
    trained = build_cnn(7, batch_norm=FusedBatchNormalization)
    shipped = export_copy(trained, "labs21", 7, tta="flip")
    want = (np.asarray(trained(x)) + np.asarray(trained(x[:, :, ::-1]))) / 2
    np.testing.assert_allclose(np.asarray(shipped(x)), want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(shipped(x[:, :, ::-1])), want, atol=1e-6)  # mirror-invariant
    assert not np.allclose(np.asarray(trained(x)), want, atol=1e-3)  # the trunk alone is not
    assert shipped.count_params() - trained.count_params() == 28 * 28  # the fixed mirror, nothing else
    assert len(shipped.trainable_weights) == len(trained.trainable_weights)
    text = shipped.to_json()
    assert "FusedBatchNormalization" not in text
    reloaded = keras.models.model_from_json(text)
    reloaded.set_weights(shipped.get_weights())
    np.testing.assert_allclose(np.asarray(reloaded(x)), want, atol=1e-6)


def test_dropout_scale_changes_training_only() -> None:
    """Scaled dropout: the Labs 21 rates times the scale; 0 trains without the noise, 1 keeps it."""
    import keras

    from quickdraw_cnn.model import build_cnn

    x = np.random.default_rng(0).integers(0, 256, size=(16, 28, 28, 1)).astype("float32")
    rates = {}
    for scale in (0.0, 0.5, 1.0):
        model = build_cnn(5, dropout_scale=scale)
        rates[scale] = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
        a, b = (np.asarray(model(x, training=True)) for _ in range(2))
        assert np.array_equal(a, b) == (scale == 0.0)
        np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
    assert rates[0.5] == [0.1, 0.15, 0.2, 0.25] and rates[1.0] == [0.2, 0.3, 0.4, 0.5]
    with pytest.raises(ValueError, match="dropout_scale"):
        build_cnn(5, dropout_scale=1.5)


def test_model_module_imports_tensorflow_only_inside_the_fused_layer() -> None:
    """bench/bench_gpu.py builds and compiles the model on Keras' JAX backend, on a GPU machine without
    TensorFlow: a module-level `import tensorflow` in model.py, or in the package modules it imports,
    would break it."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "quickdraw_cnn"
    for module in ("model", "config"):
        top_level = ast.parse((package / f"{module}.py").read_text()).body
        absolute = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        absolute += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.level == 0]
        relative = {n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.level > 0}
        assert not [name for name in absolute if name.split(".")[0] == "tensorflow"], module
        assert relative <= {"config"}, f"{module} imports {relative}: check those for TensorFlow too"
