"""The Labs 21 batch-norm/dropout CNN, taking raw uint8 drawings (0..255, 28x28x1)."""

from __future__ import annotations

import keras
from keras import layers

# 25.6 M multiply-adds forward per 28x28 drawing, ~3x that with the backward pass: for GFLOP/s figures
FLOP_PER_TRAINED_DRAWING = 3 * 2 * 25.6e6


def build_cnn(num_classes: int) -> keras.Model:
    """Labs 21 architecture, plus a Rescaling layer so every consumer feeds the same 0..255 pixels.

    Conv16-BN, Conv32-BN, Pool, Drop .2, Conv64-BN x2, Pool, Drop .3, Conv128-BN x2, Pool, Drop .4,
    Dense128-BN, Drop .5, softmax. All convs 3x3 'same', ReLU, he_uniform (444,388 weights at 100 classes).
    """

    def conv(filters: int) -> list[layers.Layer]:
        return [
            layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),
            layers.BatchNormalization(),
        ]

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="drawing"),
            layers.Rescaling(1.0 / 255.0),
            *conv(16),
            *conv(32),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2),
            *conv(64),
            *conv(64),
            layers.MaxPooling2D(2),
            layers.Dropout(0.3),
            *conv(128),
            *conv(128),
            layers.MaxPooling2D(2),
            layers.Dropout(0.4),
            layers.Flatten(),
            layers.Dense(128, activation="relu", kernel_initializer="he_uniform"),
            layers.BatchNormalization(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="labs21_cnn",
    )
