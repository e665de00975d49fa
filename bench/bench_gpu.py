"""Training throughput on a GPU, through any Keras backend: the GPU machine lent to this project has
JAX and PyTorch but no TensorFlow, and TensorFlow's wheels are far larger than what can be carried there.

    # here, where ../shared is: the real drawings of bench_train.py's accuracy split, as one array file
    .venv/bin/python bench/bench_gpu.py --export .gpu/real.npz
    # on the GPU machine (keras carried as a wheel)
    KERAS_BACKEND=jax python3 bench/bench_gpu.py --arrays .gpu/real.npz

The comparison is bench_train.py's throughput part on the same architecture (`build_cnn`): the Labs 21
way (float32 arrays in memory, `model.fit`, batch 32, Adam 1e-3) against our recipe (uint8 drawings that
the model rescales, `compile_for_training` with the defaults: AdamW, warm-up + cosine schedule, label
smoothing, no dropout), in float32 and mixed_bfloat16, at batch 64 and the larger batches a GPU wants.
What differs from train_cnn.py: the input is in-memory uint8 arrays, not the tf.data pipeline (it needs
TensorFlow), so there is no flip/affine augmentation, and batch norm is Keras' own layer (the fused one
is a TensorFlow op). Each configuration trains --epochs whole epochs of the training part. The first
epoch compiles, so drawings/s counts the epochs after it. Validation top-1 after the last epoch shows
whether the speed costs accuracy per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from quickdraw_cnn.config import TrainConfig  # noqa: E402

CONFIGS = {
    # name: (precision, batch size, recipe)
    "labs21_float32_b32": ("float32", 32, "labs21"),
    "ours_float32_b64": ("float32", 64, "ours"),
    "ours_mixed_bfloat16_b64": ("mixed_bfloat16", 64, "ours"),
    "ours_float32_b256": ("float32", 256, "ours"),
    "ours_mixed_bfloat16_b256": ("mixed_bfloat16", 256, "ours"),
    "ours_mixed_bfloat16_b1024": ("mixed_bfloat16", 1024, "ours"),
}


def export_arrays(split_dir: Path, path: Path) -> None:
    """Write the split's train and validation drawings (uint8) and labels into one .npz file."""
    from quickdraw_cnn.dataset import DatasetError, Split

    try:
        split = Split.load(split_dir)
    except DatasetError as exc:
        sys.exit(f"bench_gpu.py: {exc}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        x_train=split.images("train"),
        y_train=split.labels("train"),
        x_val=split.images("val"),
        y_val=split.labels("val"),
        class_names=np.array(split.class_names),
    )
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def accelerator() -> str:
    """The device Keras computes on, in words."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}: {jax.devices()[0].device_kind}"
    if backend == "torch":
        import torch

        return f"torch {torch.__version__}: " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    import tensorflow as tf

    return f"tensorflow {tf.__version__}: " + (", ".join(d.name for d in tf.config.list_logical_devices()))


def train_one(name: str, arrays: dict, epochs: int, steps_per_execution: int, learning_rate: float) -> dict:
    """Train one configuration from scratch; drawings/s over the epochs after the first."""
    import keras

    from quickdraw_cnn.model import FLOP_PER_TRAINED_DRAWING, build_cnn, compile_for_training

    precision, batch, recipe = CONFIGS[name]
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    classes = len(arrays["class_names"])
    x, y = arrays["x_train"], arrays["y_train"].astype("int32")
    if recipe == "labs21":
        peak_learning_rate = 1e-3  # constant
        model = build_cnn(classes)
        model.compile(
            keras.optimizers.Adam(peak_learning_rate),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution,
        )
        x = x.astype("float32")  # the Labs 21 way: float arrays in memory
    else:
        peak_learning_rate = learning_rate
        config = TrainConfig(batch_size=batch, precision=precision, epochs=epochs, learning_rate=learning_rate)
        model = compile_for_training(
            build_cnn(classes, dropout_scale=config.dropout_scale),
            config,
            len(x) // batch,
            steps_per_execution=steps_per_execution,
        )
        y = keras.utils.to_categorical(y, classes)  # label smoothing needs one-hot targets

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # waits for the epoch's last step: the loss depends on every step before
            self.seconds.append(time.perf_counter() - self.t0)

    timer = EpochTimer()
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[timer], verbose=0, shuffle=True)
    timed = timer.seconds[1:] or timer.seconds
    rate = len(x) * len(timed) / sum(timed)  # fit trains the last, partial batch too
    probs = model.predict(arrays["x_val"].astype("float32"), batch_size=1024, verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    return {
        "precision": precision,
        "batch_size": batch,
        "steps_per_execution": steps_per_execution,
        "peak_learning_rate": peak_learning_rate,
        "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "drawings_per_second": rate,
        "tflops": rate * FLOP_PER_TRAINED_DRAWING / 1e12,
        "val_top1_after_epochs": float(np.mean(probs.argmax(1) == arrays["y_val"])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arrays", type=Path, help="the .npz written by --export: what to train on")
    p.add_argument("--export", type=Path, help="write --split's train/val drawings to this .npz and stop")
    p.add_argument("--split", type=Path, default=ROOT / "bench" / "out" / "real_split_all", help="split to --export")
    p.add_argument("--epochs", type=int, default=3, help="epochs per configuration; the first is not timed")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="training steps per compiled call (Keras' compile option): fewer Python round trips per epoch",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=TrainConfig().learning_rate,
        help="our configurations' peak learning rate (default: %(default)s, as train_cnn.py)",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    if args.export:
        return export_arrays(args.split, args.export)
    if not args.arrays or not args.arrays.is_file():
        sys.exit(f"bench_gpu.py: --arrays {args.arrays}: no such file (make it with --export)")
    names = args.configs.split(",")
    if unknown := set(names) - set(CONFIGS):
        sys.exit(f"bench_gpu.py: unknown --configs {', '.join(sorted(unknown))}")
    if args.epochs < 2:
        sys.exit("bench_gpu.py: --epochs must be at least 2 (the first compiles and is not timed)")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        arrays = dict(np.load(args.arrays))
        missing = {"x_train", "y_train", "x_val", "y_val", "class_names"} - set(arrays)
    except (OSError, ValueError) as exc:
        sys.exit(f"bench_gpu.py: --arrays {args.arrays}: not an --export file ({exc})")
    if missing:
        sys.exit(f"bench_gpu.py: --arrays {args.arrays}: not an --export file (no {', '.join(sorted(missing))})")
    out = {"device": accelerator(), "train_drawings": len(arrays["x_train"]), "epochs": args.epochs, "results": {}}
    print(json.dumps({k: v for k, v in out.items() if k != "results"}), flush=True)
    for name in names:
        out["results"][name] = train_one(name, arrays, args.epochs, args.steps_per_execution, args.learning_rate)
        print(name, json.dumps(out["results"][name]), flush=True)
    base = out["results"].get("labs21_float32_b32", {}).get("drawings_per_second")
    for name, r in out["results"].items():
        if base:
            r["speedup_vs_labs21"] = r["drawings_per_second"] / base
        speedup = r.get("speedup_vs_labs21", float("nan"))
        print(f"{name:28s} {r['drawings_per_second']:9,.0f} drawings/s  {r['tflops']:6.2f} TFLOP/s  "
              f"x{speedup:5.2f}  val top-1 {r['val_top1_after_epochs']:.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
