"""Training benchmarks: throughput vs the Labs 21 way, accuracy on real drawings, bounded memory.

    .venv/bin/python bench/bench_train.py                      # all four, ~17 min on 2 cores
    .venv/bin/python bench/bench_train.py --parts throughput   # one of them
    .venv/bin/python bench/bench_train.py --parts accuracy --max-per-class 0   # all 60,000 real drawings

1. throughput: drawings/s of the default training configuration (streaming pipeline from the split,
   batch 64 (--batch-size), flips and affine changes (--augment), no dropout (--dropout-scale), AdamW;
   mixed_bfloat16 and float32; --xla: also float32 with XLA) against the Labs 21 way (float32 arrays in
   memory, `model.fit`, batch 32, same architecture), INTERLEAVED in one process (baseline, ours, bf16,
   baseline, ...) so a busy shared CPU slows all alike; the median of the rounds is reported. Also the
   achieved GFLOP/s (~153.6 MFLOP per trained drawing: 25.6 M multiply-adds forward, ~3x with backward)
   against what a large matrix product reaches on this CPU in that precision, and the share of a step
   made of nothing but the model's convolutions (the ceiling for these kernels), with each kernel's
   GFLOP/s, and what Winograd's fewer multiplications could take at most (`winograd_bound`).
2. accuracy: the real drawings in ../shared/data/quickdraw-real/bitmaps (20 classes) through the
   project's chain (write_split -> train with the defaults) vs the same architecture trained the Labs 21
   way (Adam 1e-3, batch 32, no schedule, no augmentation, float32, --baseline-epochs) on the same split;
   test top-1/top-5 and training time of both, and each one's top-1 with and without the mirror averaging
   (ours ships it, --tta flip; the Labs 21 way did not).
3. memory: peak RSS of a training run (subprocess, a few hundred steps) on 345 classes x --rss-per-class
   generated drawings (5.4 GB of files at 20,000), sampled from /proc: RssAnon (heap: model, TF,
   buffers) vs RssFile (pages of the memory-mapped class files, reclaimable page cache).
4. pipeline: drawings/s of train_cnn.py's input pipeline alone (PartReader.dataset streaming from the
   memory-mapped class files: shuffle, gather, --augment, one-hot), with 1, 2, 4, ... threads up to
   every core, at batch 64 and 256, on 345 classes x --pipeline-per-class generated drawings. It says
   how many CPU cores it takes to keep an accelerator fed (the H200 trained ~120,000 drawings/s in
   bench_gpu.py).
Outputs (figures as JSON) go to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from quickdraw_cnn.cli import share  # noqa: E402
from quickdraw_cnn.config import AUGMENTATIONS, TrainConfig  # noqa: E402
from quickdraw_cnn.dataset import Split, write_split  # noqa: E402
from quickdraw_cnn.npy_format import write_bitmaps  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "quickdraw-real" / "bitmaps"


def cpu_peak() -> dict:
    """What this CPU really does: a large matrix product's GFLOP/s in float32 and bfloat16 (TensorFlow,
    all cores, best of 5). lscpu's clock is the base clock of a virtual machine (2.6 GHz here) while the
    cores boost; a peak computed from it came out below what training itself achieved."""
    import tensorflow as tf

    n = 2048
    matmul = tf.function(tf.matmul)
    model = re.search(r"^Model name:\s+(.*)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout, re.M)
    out = {"model": model and model.group(1), "cores": os.cpu_count()}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        out[f"matmul_{dtype}_gflops"] = 2 * n**3 / best_seconds(matmul, a, a, repeats=5, number=8) / 1e9
    return out


def best_seconds(op, *args, repeats: int, number: int) -> float:
    """Seconds per call of a TensorFlow op: the best of `repeats` timings of `number` calls, after one
    warm-up call (tracing); each timing waits for the last result, so queued work is counted."""
    op(*args).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            result = op(*args)
        result.numpy()
        best = min(best, (time.perf_counter() - t) / number)
    return best


# (input size, channels in, channels out) of the six 3x3 'same' convolutions of the Labs 21 CNN
CONV_SHAPES = [(28, 1, 16), (28, 16, 32), (14, 32, 64), (14, 64, 64), (7, 64, 128), (7, 128, 128)]


def conv_ceiling(batch: int, dtype: str) -> tuple[float, dict[str, float]]:
    """Drawings/s of a training step that did nothing but this model's convolutions (forward with ReLU,
    gradient to the input, gradient to the kernel and bias; TensorFlow's own kernels, best of 3): the
    most any pipeline, optimizer or layer fusion could reach with these kernels on this CPU. Also each
    kernel's GFLOP/s ("14x14x32->64 kernel_gradient": ...), which shows where the kernels fall short."""
    import tensorflow as tf

    def forward(x, w, dy):
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))

    def kernel_gradient(x, w, dy):
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=w.shape, out_backprop=dy, strides=[1] * 4, padding="SAME"
        )

    def bias_gradient(x, w, dy):
        return tf.reduce_sum(dy, axis=[0, 1, 2])

    def input_gradient(x, w, dy):
        return tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x.shape, filter=w, out_backprop=dy, strides=[1] * 4, padding="SAME"
        )

    seconds = 0.0
    gflops = {}
    for size, cin, cout in CONV_SHAPES:
        args = [
            tf.cast(tf.random.normal(shape), dtype)
            for shape in [(batch, size, size, cin), (3, 3, cin, cout), (batch, size, size, cout)]
        ]
        # the first layer's input (the drawing) needs no gradient
        for op in [forward, kernel_gradient, bias_gradient] + [input_gradient] * (cin > 1):
            t = best_seconds(tf.function(op), *args, repeats=3, number=20)
            seconds += t
            if op is not bias_gradient:
                flop = 2 * batch * size * size * 9 * cin * cout
                gflops[f"{size}x{size}x{cin}->{cout} {op.__name__}"] = flop / t / 1e9
    return batch / seconds, gflops


def winograd_bound(batch: int, dtype: str) -> dict[str, dict[str, float]]:
    """Doing fewer multiplications: Winograd F(2x2, 3x3) computes a 3x3 convolution with 2.25x fewer
    multiplications, as 16 matrix products [batch * tiles, channels in] x [channels in, channels out]
    plus transforms of the input and output tiles. This times those 16 products alone (TensorFlow's
    batched matmul, best of 3) against the direct forward kernel: a lower bound on a Winograd forward
    built from TensorFlow ops, since the transforms come on top (milliseconds per layer)."""
    import tensorflow as tf

    out = {}
    for size, cin, cout in CONV_SHAPES[1:]:  # the first layer, one input channel, is ~1% of the work
        tiles = batch * ((size + 1) // 2) ** 2  # 2x2 output tiles
        x, w, v, u = [
            tf.cast(tf.random.normal(shape), dtype)
            for shape in [(batch, size, size, cin), (3, 3, cin, cout), (16, tiles, cin), (16, cin, cout)]
        ]
        direct = best_seconds(tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")), x, w, repeats=3, number=20)
        products = best_seconds(tf.function(tf.matmul), v, u, repeats=3, number=20)
        out[f"{size}x{size}x{cin}->{cout}"] = {
            "direct_forward_ms": direct * 1e3,
            "winograd_products_ms": products * 1e3,
        }
    return out


class BatchTimer:
    """Keras callback factory: seconds for the steps after the first `skip` of one fit call."""

    def __new__(cls, skip: int = 2):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.t0 = None
                self.t1 = None
                self.n = 0

            def on_train_batch_end(self, batch, logs=None):
                if batch == skip - 1:
                    self.t0 = time.perf_counter()
                elif batch >= skip:
                    self.n += 1
                    self.t1 = time.perf_counter()

            def seconds(self) -> float:
                return (self.t1 - self.t0) if self.t0 and self.t1 else float("nan")

        return _Timer()


def real_split(out: Path, max_per_class: int | None) -> Path:
    if not REAL.is_dir():
        sys.exit(f"bench_train.py: {REAL} not found (real drawings are needed for this part)")
    split_dir = out / f"real_split_{max_per_class or 'all'}"
    if not (split_dir / "split.json").exists():
        write_split(REAL, split_dir, max_per_class=max_per_class, seed=0)
    return split_dir


# ---- 1. throughput ------------------------------------------------------------------------------


def bench_throughput(args: argparse.Namespace) -> dict:
    import keras

    from quickdraw_cnn.model import FLOP_PER_TRAINED_DRAWING, build_cnn
    from quickdraw_cnn.train import PartReader, build_model

    split_dir = real_split(args.out, 1000)
    split = Split.load(split_dir)
    classes = len(split.class_names)
    n = len(split.index["train"])
    x32 = split.images("train").astype("float32")  # the Labs 21 way: float arrays in memory
    y = split.labels("train").astype("int32")

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    baseline = build_cnn(classes)
    baseline.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy")],
    )
    reader = PartReader(split, "train", 512 << 20)
    configs = {}
    variants = [("float32", False), ("mixed_bfloat16", False)] + ([("float32", True)] if args.xla else [])
    for precision, xla in variants:
        keras.mixed_precision.set_global_policy(precision)
        cfg = TrainConfig(
            batch_size=args.batch_size, precision=precision, dropout_scale=args.dropout_scale, augment=args.augment
        )
        model = build_model(cfg, classes, n // cfg.batch_size, jit_compile=xla)
        ds = reader.dataset(
            cfg.batch_size, True, 0, cfg.augment, num_classes=classes, label_smoothing=cfg.label_smoothing
        )
        configs[f"ours_{precision}_b{cfg.batch_size}{'_xla' if xla else ''}"] = (model, ds, cfg.batch_size)
    keras.mixed_precision.set_global_policy("float32")

    def run(name: str) -> float:
        timer = BatchTimer(skip=2)
        if name == "labs21_baseline_b32":
            steps = args.steps_small
            baseline.fit(
                x32, y, batch_size=32, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=True
            )
            return timer.n * 32 / timer.seconds()
        model, ds, bs = configs[name]
        model.fit(ds, epochs=1, steps_per_epoch=args.steps_large, callbacks=[timer], verbose=0, shuffle=False)
        return timer.n * bs / timer.seconds()

    names = ["labs21_baseline_b32", *configs]
    for name in names:  # warm-up: tracing, oneDNN primitive creation
        run(name)
    rates: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        for name in names:
            rates[name].append(run(name))
            print(f"  round {r + 1}: {name}: {rates[name][-1]:.0f} drawings/s", flush=True)
    peak = cpu_peak()
    measured = {(p, b): conv_ceiling(b, p) for p in ("float32", "bfloat16") for b in sorted({args.batch_size, 256})}
    ceilings = {key: rate for key, (rate, _) in measured.items()}
    peak["conv_only_drawings_per_second"] = {f"{p}_b{b}": v for (p, b), v in ceilings.items()}
    peak["conv_kernel_gflops"] = {f"{p}_b{b}": layers for (p, b), (_, layers) in measured.items()}
    peak["winograd_bound"] = {
        f"{p}_b{args.batch_size}": winograd_bound(args.batch_size, p) for p in ("float32", "bfloat16")
    }
    out = {"cpu": peak, "interleaved_rounds": args.rounds, "rates": rates, "median": {}}
    base = statistics.median(rates["labs21_baseline_b32"])
    for name in names:
        med = statistics.median(rates[name])
        gflops = med * FLOP_PER_TRAINED_DRAWING / 1e9
        dtype = "bfloat16" if "bfloat16" in name else "float32"
        out["median"][name] = {
            "drawings_per_second": med,
            "speedup_vs_baseline": med / base,
            "gflops": gflops,
            "share_of_matmul_peak": gflops / peak[f"matmul_{dtype}_gflops"],
        }
        if name.startswith("ours_"):
            out["median"][name]["share_of_conv_only_step"] = med / ceilings[(dtype, configs[name][2])]
    return out


# ---- 2. accuracy on real drawings ---------------------------------------------------------------


def bench_accuracy(args: argparse.Namespace) -> dict:
    split_dir = real_split(args.out, args.max_per_class or None)
    result = {"split": str(split_dir), "counts": json.loads((split_dir / "split.json").read_text())["counts"]}

    # the project's chain, as a user runs it (subprocess: its own process, like train_cnn.py in real use)
    ours_out = args.out / "acc_ours"
    shutil.rmtree(ours_out, ignore_errors=True)
    cmd = [
        sys.executable, str(ROOT / "train_cnn.py"), "--split", str(split_dir), "--out", str(ours_out / "models"),
        "--screenshots", str(ours_out / "screenshots"), "--quiet", "--fresh", "--no-onnx", *args.ours_args,
    ]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    ours_wall = time.perf_counter() - t
    m = json.loads((ours_out / "models" / "metrics.json").read_text())
    result["ours"] = {
        "command": " ".join(cmd[1:]),
        "test_top1": m["test"]["top1_accuracy"],
        "test_top5": m["test"]["top5_accuracy"],
        "epochs": len(m["history"]["epoch"]),
        "best_epoch": m["best_epoch"],
        "train_seconds": m["timing"]["train_seconds_this_run"],
        "fit_seconds_incl_validation": m["timing"]["fit_seconds"],
        "wall_seconds_incl_startup_eval_export": ours_wall,
        "history_val_accuracy": m["history"]["val_accuracy"],
    }
    import keras

    from quickdraw_cnn.model import build_cnn, mirror_averaged

    split = Split.load(split_dir)
    x_te, y_te = split.images("test").astype("float32"), split.labels("test")
    shipped = keras.models.load_model(ours_out / "models" / "model.keras", compile=False)
    cnn = next((layer for layer in shipped.layers if isinstance(layer, keras.Model)), None)
    if cnn is not None:  # --tta flip: how much of the figure the mirror averaging earns
        cnn_top1 = float(np.mean(cnn.predict(x_te, batch_size=500, verbose=0).argmax(1) == y_te))
        result["ours"]["test_top1_cnn_alone"] = cnn_top1
    print("  ours:", json.dumps({k: v for k, v in result["ours"].items() if k != "history_val_accuracy"}))

    # the Labs 21 way on the same split
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    x_tr, y_tr = split.images("train").astype("float32"), split.labels("train")
    x_va, y_va = split.images("val").astype("float32"), split.labels("val")
    model = build_cnn(len(split.class_names))
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy")],
    )
    t = time.perf_counter()
    hist = model.fit(x_tr, y_tr, batch_size=32, epochs=args.baseline_epochs, validation_data=(x_va, y_va), verbose=2)
    base_fit = time.perf_counter() - t
    loss, top1, top5 = model.evaluate(x_te, y_te, batch_size=256, verbose=0)
    averaged = mirror_averaged(model).predict(x_te, batch_size=500, verbose=0)
    result["labs21_baseline"] = {
        "test_top1": top1,
        "test_top5": top5,
        "test_top1_mirror_averaged": float(np.mean(averaged.argmax(1) == y_te)),
        "epochs": args.baseline_epochs,
        "fit_seconds_incl_validation": base_fit,
        "history_val_accuracy": hist.history["val_accuracy"],
    }
    result["top1_gain_points"] = 100 * (result["ours"]["test_top1"] - top1)
    print("  labs21:", json.dumps({k: v for k, v in result["labs21_baseline"].items() if "history" not in k}))
    return result


# ---- 3. bounded memory --------------------------------------------------------------------------


def make_rss_data(folder: Path, per_class: int, classes: int = 345) -> None:
    """Cheap learnable files: a random template per class, shifted and noised per drawing."""
    from quickdraw_cnn.categories import all_categories, file_stem

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    chunk = 5000
    for name in all_categories()[:classes]:
        path = folder / f"{file_stem(name)}.npy"
        if path.exists():
            continue
        template = (rng.random((28, 28)) > 0.8).astype(np.uint8) * 255
        rows = np.empty((per_class, 784), np.uint8)
        for s in range(0, per_class, chunk):
            k = min(chunk, per_class - s)
            shift = rng.integers(-2, 3, size=2)
            img = np.roll(template, tuple(shift), axis=(0, 1))
            noise = rng.random((k, 784)) > 0.97
            rows[s : s + k] = np.where(noise, 255 - img.ravel(), img.ravel())
        write_bitmaps(path, rows)


def rss_split(data: Path) -> Path:
    """A split of make_rss_data's files that keeps nearly everything for training."""
    split_dir = data.with_name(data.name + "_split")
    write_split(data, split_dir, val_fraction=0.005, test_fraction=0.005, seed=0)
    return split_dir


def sample_rss(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def bench_memory(args: argparse.Namespace) -> dict:
    data = args.out / f"rss_data_{args.rss_per_class}"
    need = 345 * args.rss_per_class * 784
    if not (data / "zigzag.npy").exists() and shutil.disk_usage(args.out).free < need * 1.2:
        sys.exit(f"bench_train.py: not enough disk for {need / 1e9:.1f} GB of generated files in {data}")
    t = time.perf_counter()
    make_rss_data(data, args.rss_per_class)
    gen = time.perf_counter() - t
    split_dir = rss_split(data)
    counts = json.loads((split_dir / "split.json").read_text())["counts"]
    cmd = [
        sys.executable, str(ROOT / "train_cnn.py"), "--split", str(split_dir), "--out", str(args.out / "rss_models"),
        "--screenshots", str(args.out / "rss_screenshots"), "--epochs", "2", "--max-steps-per-epoch",
        str(args.rss_steps // 2), "--quiet", "--fresh", "--no-onnx",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd)
    peak: dict[str, int] = {}
    while proc.poll() is None:
        for k, v in sample_rss(proc.pid).items():
            peak[k] = max(peak.get(k, 0), v)
        time.sleep(0.25)
    if proc.returncode:
        sys.exit(f"bench_train.py: memory run failed ({proc.returncode})")
    gib = {k: round(v / 2**30, 3) for k, v in peak.items()}
    return {
        "classes": 345,
        "per_class": args.rss_per_class,
        "data_gb": need / 1e9,
        "generate_seconds": gen,
        "split_counts": counts,
        "train_index_mb": counts["train"] * 8 / 2**20,
        "peak_gib": gib,
        "note": "RssAnon: process heap (TF, model, pipeline buffers, the index). RssFile: pages of the "
        "memory-mapped .npy files touched so far; shared, clean page cache the kernel can drop at any time.",
    }


# ---- 4. input pipeline ---------------------------------------------------------------------------


def bench_pipeline(args: argparse.Namespace) -> dict:
    import tensorflow as tf

    from quickdraw_cnn.train import PartReader

    data = args.out / f"rss_data_{args.pipeline_per_class}"
    make_rss_data(data, args.pipeline_per_class)
    split = Split.load(rss_split(data))
    reader = PartReader(split, "train", in_memory_bytes=0)  # streamed, as a 345-class retrain is
    cores = len(os.sched_getaffinity(0))
    out: dict = {"classes": len(split.class_names), "train_drawings": len(reader), "augment": args.augment}
    for batch in (64, 256):
        for threads in sorted({1, cores} | {2**k for k in range(1, 8) if 2**k < cores}):
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            ds = reader.dataset(batch, True, 0, args.augment, len(split.class_names), 0.1).with_options(options)
            it = iter(ds)
            for _ in range(5):
                next(it)
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < args.pipeline_seconds:
                n += len(next(it)[0])
            rate = n / (time.perf_counter() - t)
            del it, ds  # a live iterator at interpreter exit can hang it (tf.numpy_function needs the GIL)
            out[f"b{batch}_threads{threads}"] = round(rate)
            print(f"batch {batch}, {threads} thread(s): {rate:,.0f} drawings/s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="throughput,accuracy,memory,pipeline", help="comma-separated subset")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="work/output folder")
    p.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (default: 3)")
    p.add_argument("--batch-size", type=int, default=64, help="our batch size for throughput (train_cnn.py's: 64)")
    p.add_argument("--steps-small", type=int, default=200, help="baseline steps per round (batch 32)")
    p.add_argument("--steps-large", type=int, default=30, help="our steps per round")
    d = TrainConfig()
    p.add_argument(
        "--dropout-scale",
        type=share,
        default=d.dropout_scale,
        help="throughput part: ours with train_cnn.py's --dropout-scale (default: %(default)s, as train_cnn.py)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=d.augment,
        help="throughput part: ours with train_cnn.py's --augment (default: %(default)s, as train_cnn.py)",
    )
    p.add_argument("--xla", action="store_true", help="throughput part: also float32 with jit_compile=True")
    p.add_argument("--max-per-class", type=int, default=1000, help="accuracy part: real drawings per class, 0 = all")
    p.add_argument("--baseline-epochs", type=int, default=10, help="accuracy part: Labs 21 epochs (default: 10)")
    p.add_argument("--ours-args", default="", help="accuracy part: extra train_cnn.py options, e.g. '--epochs 12'")
    p.add_argument("--rss-per-class", type=int, default=20000, help="memory part: drawings per class")
    p.add_argument("--rss-steps", type=int, default=200, help="memory part: training steps")
    p.add_argument("--pipeline-per-class", type=int, default=2000, help="pipeline part: drawings per class")
    p.add_argument("--pipeline-seconds", type=float, default=8.0, help="pipeline part: seconds per measurement")
    args = p.parse_args()
    args.ours_args = args.ours_args.split()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for part in args.parts.split(","):
        print(f"== {part}", flush=True)
        bench = {
            "throughput": bench_throughput,
            "accuracy": bench_accuracy,
            "memory": bench_memory,
            "pipeline": bench_pipeline,
        }[part]
        results[part] = bench(args)
        print(json.dumps(results[part], indent=1), flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench_train-{stamp}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
