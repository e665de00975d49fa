"""Train the drawing CNN from a split: streaming input, schedule, resume, distribution, evaluation.

The split (see `dataset.py`) is an index into memory-mapped class files, so the input pipeline never
holds the data set as floats: it shuffles positions, gathers uint8 rows per batch and lets the model
rescale them. A part whose uint8 payload is small is gathered once into memory (a quarter of the float32
size) and indexed there, which spares the per-batch Python call; a larger part is read batch by batch from
the memory maps, so memory stays bounded whatever the data size.

Speed (bench/bench_train.py, 2-core AVX512_BF16 CPU): the fused batch norm and batch 64 train ~1.3x faster
than the Labs 21 way (float32, batch 32), ~1.9x with bfloat16 compute (float32 master weights); XLA
(jit_compile) is ~4x slower on CPU for this model, so it stays off. The exported model is float32 whatever
the training precision. The defaults (`config.py`: the recipe chosen on validation accuracy over 20 real
classes, the epochs on the goal's time budget; bench/RESULTS.md) reach 93.6% test top-1 (93.68% over
seven runs) against 90.6% the Labs 21 way, in 0.91x its time.

Interruption is expected: the optimizer state, the epoch reached, the best weights and the history live
in a work folder next to `--out`; running the same command again continues from the last finished epoch.
Nothing is written into `--out` before the end, and then only through `export.export_model` (atomic).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import report
from .config import (
    AUGMENTATIONS,
    MAX_EPOCHS,
    MAX_SEED,
    PRECISIONS,
    STRATEGIES,
    TEST_TIME_AUGMENTATIONS,
    TrainConfig,
)
from .dataset import SPLIT_FILE, DatasetError, Split, gather, scan_data_dir, write_split
from .download import DownloadError, read_manifest
from .files import is_within, lock_folder, not_replaceable, write_text_atomic
from .model import (
    FLOP_PER_TRAINED_DRAWING,
    FusedBatchNormalization,
    build_cnn,
    compile_for_training,
    mirror_averaged,
)

ARCHITECTURES = {"labs21": build_cnn}
WORK_STATE = "run.json"  # what the work folder was training, checked before resuming
# Version of the work folder's contents. Keras keys weight files by layer class, so a change of
# training-time layers (2: FusedBatchNormalization) makes an older folder unloadable; 3: run.json records
# every training setting. Refuse an older folder clearly.
WORK_FORMAT = 3
RESUMABLE_FORMATS = (2, 3)  # format 2 has the same weight files; its run.json records fewer settings
HISTORY_FILE = "history.csv"
# What a work folder may hold: it is deleted whole (after a run, or for --fresh), so a folder holding
# anything else (a mistaken --work-dir) is refused instead. Multi-worker roots hold one folder per task.
WORK_ENTRIES = (WORK_STATE, "backup", "best.weights.h5", "best.part.weights.h5", "best.json", HISTORY_FILE)
MIN_FREE_BYTES = 200 * 1024 * 1024  # model files + reports + backups need well under this
FIGURES_BYTES = 20 * 1024 * 1024  # the figures need a few MB even at 345 classes
READ_ROWS = 8192  # rows a streamed part reads from the class files per Python call (6.4 MB), then cut into batches


class TrainError(RuntimeError):
    """Training cannot start or finish; the message is one line naming the file or option at fault."""


# ---- distribution -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """Where this process sits in a (possibly one-process) cluster."""

    type: str = "chief"
    index: int = 0
    num_workers: int = 1
    has_chief: bool = False

    @property
    def rank(self) -> int:
        """0 for the chief; TensorFlow's input pipeline id (workers after the chief, if any)."""
        if self.type == "chief":
            return 0
        return self.index + 1 if self.has_chief else self.index

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def cluster_task() -> Task:
    """This process's role from TF_CONFIG (the standard multi-worker configuration)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Task()
    try:
        conf = json.loads(raw)
    except ValueError as exc:
        raise TrainError(f"TF_CONFIG is not valid JSON ({exc})") from None
    cluster = conf.get("cluster") if isinstance(conf, dict) else None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainError('TF_CONFIG must be {"cluster": {"worker": ["host:port", ...]}, "task": {"type", "index"}}')
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise TrainError(f'TF_CONFIG: cluster "{role}" must be a list of "host:port" addresses')
    kind, raw_index = task.get("type"), task.get("index")
    # a whole number, or its digits as a string as TensorFlow reads them ("1" is 1); not true or 1.5
    if type(raw_index) is int or (isinstance(raw_index, str) and raw_index.strip().isdigit()):
        index = int(raw_index)
    else:
        raise TrainError(f"TF_CONFIG: task index {raw_index!r} is not a whole number")
    if kind == "evaluator":
        raise TrainError("TF_CONFIG: an evaluator task is not supported; train_cnn.py validates every epoch")
    if kind not in cluster:
        raise TrainError(f"TF_CONFIG: task type {kind!r} is not one of the cluster's roles ({', '.join(cluster)})")
    if not 0 <= index < len(cluster[kind]):
        raise TrainError(f'TF_CONFIG: task index {index} is outside the {len(cluster[kind])} "{kind}" addresses')
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return Task(str(kind), index, max(1, workers), "chief" in cluster)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute engine for `--strategy`; multiworker reads the cluster from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise TrainError("--strategy multiworker needs TF_CONFIG describing the cluster and this task")
        cluster_task()  # validate before TensorFlow tries
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainError(f"unknown --strategy {name!r}; choose from {', '.join(STRATEGIES)}")


# ---- input pipeline -----------------------------------------------------------------------------


class ExitGate:
    """Lets no Python read start once the interpreter exits, so a live iterator cannot hang the exit.

    TensorFlow's threads call the streamed reads in Python. A thread that asks for the GIL after Python
    began finalizing is stopped inside its call, which then never returns. Finalizing then destroys any
    iterator still alive (a global, say), and the iterator waits for that call forever: 4 exits in 6 hung
    before this. `close` runs at exit, before finalizing. From then on a read ends its iterator at once
    (StopIteration: an OutOfRange error in TensorFlow, which logs nothing), and `close` waits until
    TensorFlow has stopped calling (`quiet` s without a read), at most `limit` s.
    """

    def __init__(self, quiet: float = 0.2, limit: float = 5.0):
        self.quiet, self.limit = quiet, limit
        self._lock = threading.Lock()
        self._closed = False
        self._running = 0
        self._last = -math.inf  # when the last read ended (time.monotonic)

    def __enter__(self) -> None:
        with self._lock:
            if self._closed:
                raise StopIteration("the Python interpreter is exiting")
            self._running += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._running -= 1
            self._last = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + self.limit
        while time.monotonic() < deadline:
            with self._lock:
                if self._running == 0 and time.monotonic() - self._last >= self.quiet:
                    return
            time.sleep(0.01)


PYTHON_READS = ExitGate()
atexit.register(PYTHON_READS.close)  # after TensorFlow's own (imported above), so it runs before them


class PartReader:
    """One part of a split (optionally one worker's shard of it) as tf.data datasets of uint8 batches."""

    def __init__(self, split: Split, part: str, in_memory_bytes: int, shard: tuple[int, int] = (1, 0)):
        pairs = split.index[part]
        count, index = shard
        if count > 1:  # equal shards, so every worker runs the same number of steps
            pairs = pairs[: len(pairs) - len(pairs) % count][index::count]
        self.pairs = np.ascontiguousarray(pairs)
        self.labels = self.pairs[:, 0].astype(np.int32)
        self.bitmaps = [b.view(np.ndarray) for b in split.bitmaps]  # still mapped; plain arrays index faster
        self.in_memory = len(self.pairs) * 784 <= in_memory_bytes
        self._images: tf.Tensor | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def _gather_fn(self):
        if self.in_memory:
            if self._images is None:
                x = gather(self.bitmaps, self.pairs).reshape(-1, 28, 28, 1)
                self._images = tf.constant(x)
                self._labels = tf.constant(self.labels)
            images, labels = self._images, self._labels

            def take(pos: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                return tf.gather(images, pos), tf.gather(labels, pos)

            return take

        pairs, bitmaps = self.pairs, self.bitmaps

        def read(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with PYTHON_READS:
                chosen = pairs[pos]
                return gather(bitmaps, chosen).reshape(-1, 28, 28, 1), chosen[:, 0].astype(np.int32)

        def take(pos: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = tf.numpy_function(read, [pos], (tf.uint8, tf.int32), stateful=False)
            x.set_shape([None, 28, 28, 1])
            y.set_shape([None])
            return x, y

        return take

    def dataset(
        self,
        batch_size: int,
        training: bool,
        seed: int = 0,
        augment: str = "none",
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
    ) -> tf.data.Dataset:
        """Batches of (uint8 or float 0..255 images, labels): shuffled, endless and augmented when training.

        Positions are shuffled, not images: the shuffle buffer holds 8-byte integers (capped at 2^21
        for streamed parts, over an index that `write_split` already shuffled globally).
        """
        n = len(self)
        ds = tf.data.Dataset.range(n)
        if training:
            buffer = n if self.in_memory else min(n, 1 << 21)
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        # Python reads a streamed part under the GIL, at a cost per call and per class: one call per batch
        # left 16 cores feeding no more than 2 did. Read many batches per call, then cut them into batches.
        rows = batch_size if self.in_memory else batch_size * max(1, READ_ROWS // batch_size)
        ds = ds.batch(rows, drop_remainder=training)
        ds = ds.map(self._gather_fn(), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if rows != batch_size:
            ds = ds.rebatch(batch_size, drop_remainder=training)  # the batches of reading one at a time
        if training and "flip" in augment:
            ds = ds.map(lambda x, y: (random_flip(x, seed), y), num_parallel_calls=tf.data.AUTOTUNE)
        if training and "affine" in augment:
            ds = ds.map(lambda x, y: (random_affine(x, seed), y), num_parallel_calls=tf.data.AUTOTUNE)
        if label_smoothing > 0:
            ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def random_flip(images: tf.Tensor, seed: int = 0) -> tf.Tensor:
    """Mirror half the drawings left-right: a cat facing left is still a cat, and people draw both ways."""
    flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed + 3) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def random_affine(
    images: tf.Tensor,
    seed: int = 0,
    max_shift: float = 2.0,
    max_scale: float = 0.1,
    max_rotate_deg: float = 10.0,
) -> tf.Tensor:
    """Small random shift / scale / rotation per drawing (people draw off-centre, big, small, tilted).

    One bilinear resampling per image (ImageProjectiveTransformV3), float32 0..255 out, so the model's
    own Rescaling still applies. Training only.
    """
    x = tf.cast(images, tf.float32)
    n = tf.shape(x)[0]
    angle = tf.random.uniform([n], -1.0, 1.0, seed=seed) * (max_rotate_deg * math.pi / 180.0)
    scale = 1.0 + tf.random.uniform([n], -max_scale, max_scale, seed=seed + 1)
    shift = tf.random.uniform([n, 2], -max_shift, max_shift, seed=seed + 2)
    c = 13.5  # centre of a 28x28 image in pixel coordinates
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # output (x, y) -> input: R(-angle)/scale applied around the centre, then shifted
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    a2 = c - a0 * (c + shift[:, 0]) - a1 * (c + shift[:, 1])
    b2 = c - b0 * (c + shift[:, 0]) - b1 * (c + shift[:, 1])
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.constant([28, 28]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


# ---- model, callbacks ---------------------------------------------------------------------------


def build_model(config: TrainConfig, num_classes: int, steps_per_epoch: int, jit_compile: bool = False) -> keras.Model:
    """The chosen architecture, training through the fused batch norm, compiled for training."""
    model = ARCHITECTURES[config.arch](
        num_classes, batch_norm=FusedBatchNormalization, dropout_scale=config.dropout_scale
    )
    # XLA on CPU measured ~4x slower for this model (bench/bench_train.py), so jit_compile stays off
    return compile_for_training(model, config, steps_per_epoch, jit_compile=jit_compile)


class BestKeeper(keras.callbacks.Callback):
    """Best-val-loss checkpoint + early stopping whose state survives an interrupted, resumed run.

    Keras' ModelCheckpoint/EarlyStopping forget their best value and patience counter when a run is
    restarted (BackupAndRestore restores only weights, optimizer and epoch), so a resumed run would
    overwrite a better checkpoint. This keeps `best.weights.h5` + `best.json` in the work folder and puts
    the best weights back at the end (restore_best_weights).

    Patience counts only from `start_from_epoch` (0-based; train() passes half the epochs): while the
    learning rate is still high, validation loss wobbles for epochs at a time, and stopping there cost a
    32-epoch run on 20 real classes 3.5 points (89.7% at epoch 12 against 93.2% when it ran all 32).
    The best checkpoint is kept from the first epoch either way.
    """

    def __init__(self, work_dir: Path, patience: int, monitor: str = "val_loss", start_from_epoch: int = 0):
        super().__init__()
        self.weights_path = work_dir / "best.weights.h5"
        self.state_path = work_dir / "best.json"
        self.patience = patience
        self.monitor = monitor
        self.start_from_epoch = start_from_epoch
        self.state = {"best": math.inf, "epoch": -1, "wait": 0}
        self.final_iterations = 0  # optimizer steps at the end, before the best weights come back
        self.on_train_begin()  # an interrupted run's state, so train() can see whether it had stopped

    @property
    def stopped_early_at(self) -> int | None:
        """The epoch (0-based) after which patience ran out, in this run or the interrupted one."""
        return self.state.get("stopped")

    def on_train_begin(self, logs=None):
        if self.state_path.is_file() and self.weights_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text())
            except ValueError:  # torn by a crash: the next epoch rewrites it
                pass

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or not math.isfinite(current):
            return
        if current < self.state["best"]:
            self.state = {"best": float(current), "epoch": int(epoch), "wait": 0}
            tmp = self.weights_path.with_name("best.part.weights.h5")
            self.model.save_weights(tmp)
            os.replace(tmp, self.weights_path)
        elif epoch >= self.start_from_epoch:
            self.state["wait"] += 1
        if self.patience and self.state["wait"] >= self.patience:
            self.state["stopped"] = int(epoch)
            self.model.stop_training = True
        write_text_atomic(self.state_path, json.dumps(self.state, indent=1))

    def on_train_end(self, logs=None):
        self.final_iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if self.weights_path.is_file():
            self.model.load_weights(self.weights_path)


RESTORE_ERRORS = (OSError, ValueError, KeyError, TypeError)  # what h5py / json raise for a torn backup


class Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore keeping the previous epoch's state as well (a backup torn by a crash or a
    full disk falls back to it), and a restore that fails anyway becomes one line suggesting --fresh.
    Says where it resumed (after any fall-back): `restored_epoch` epochs were done before this run."""

    def __init__(self, backup_dir: Path):
        super().__init__(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
            meta = Path(self.backup_dir) / "training_metadata.json"
            self.restored_epoch = int(json.loads(meta.read_text())["epoch"]) if meta.is_file() else 0
        except RESTORE_ERRORS as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainError(
                f"{self.backup_dir}: cannot restore the interrupted run ({reason}); pass --fresh to start over"
            ) from None
        work = Path(self.backup_dir).parent
        if self.restored_epoch and self.restored_epoch >= self.params.get("epochs", math.inf):
            print(f"work folder {work}: training had finished; evaluating and exporting", file=sys.stderr)
        elif self.restored_epoch:
            print(f"resuming from epoch {self.restored_epoch + 1} (work folder {work})", file=sys.stderr)


class StopOnDivergence(keras.callbacks.Callback):
    """Ends the run at the first epoch whose training loss is not finite, before anything saves it.

    NaN weights train on to the end unnoticed and the export then fails its reload check, blaming the
    files; a backup of them would make every resumed run start from NaN."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainError(
                f"training diverged in epoch {epoch + 1} (loss {float(loss)}); "
                "run again with a lower --learning-rate and --fresh"
            )


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training steps (validation excluded), for throughput figures."""

    def __init__(self):
        super().__init__()
        self.times: dict[int, float] = {}
        self.steps: dict[int, int] = {}
        self._t0 = 0.0
        self._train_end = 0.0
        self._batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times[epoch] = self._train_end - self._t0
        self.steps[epoch] = self._batches
        if logs is not None:  # lands in history.csv too, so resumed runs keep it
            logs["train_seconds"] = self.times[epoch]
            opt = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(opt.learning_rate))


def _work_around_keras_multiworker(model: keras.Model, num_classes: int, one_hot: bool) -> None:
    """Let Keras 3 `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585, open).

    Two places in Keras 3's TensorFlow trainer break every multi-worker `fit`: (1) before training it
    averages a first (x, y) batch across workers with `strategy.reduce`, which this strategy cannot do
    for a tuple; the build needs only shapes and dtypes, so this model builds from a local example batch
    instead; (2) it averages the per-step scalar metrics with `reduce(..., axis=0)`, invalid for a
    scalar; scalars are averaged across workers with axis=None instead (equal shards: the exact mean).
    Only applied for --strategy multiworker; the training step itself is Keras' own.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    y = np.zeros((1, num_classes), np.float32) if one_hot else np.zeros((1,), np.int32)
    example = (np.zeros((1, 28, 28, 1), np.uint8), y)

    def build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=example)

    model._maybe_symbolic_build = build

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_scalar_safe", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):

            def mean(v):
                local = strategy.experimental_local_results(v)[0] if tf_trainer._is_per_replica_instance(v) else v
                axis = 0 if getattr(local.shape, "rank", 0) else None
                return strategy.reduce("MEAN", v, axis=axis)

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._scalar_safe = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns, one row per epoch (a row repeated by a resumed run: the last one wins).

    Epochs are numbered from 1, like `best_epoch` and the progress bars (Keras' CSV counts from 0)."""
    if not path.is_file():
        return {}
    import csv

    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows[int(row["epoch"])] = row
    if not rows:
        return {}
    keys = [k for k in next(iter(rows.values())) if k != "epoch"]
    out: dict[str, list[float]] = {"epoch": [e + 1 for e in sorted(rows)]}
    for k in keys:
        out[k] = [float(rows[e][k]) if rows[e].get(k) not in (None, "") else math.nan for e in sorted(rows)]
    return out


# ---- evaluation ---------------------------------------------------------------------------------


def predict_part(
    model: keras.Model, reader: PartReader, batch_size: int, keep_examples: int = 12, seed: int = 0
) -> report.Evaluation:
    """Top-1, top-5 and loss over a whole part, streaming (memory: a few bytes per drawing)."""
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    n = len(reader)
    y_pred = np.empty(n, np.int32)
    top5_hit = np.empty(n, bool)
    loss_sum = 0.0
    rng = np.random.default_rng(seed)
    wanted = set(rng.choice(n, size=min(keep_examples, n), replace=False).tolist()) if n else set()
    examples: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
    start = 0
    for x, y in reader.dataset(batch_size, training=False):
        probs = np.asarray(infer(x), dtype=np.float64)
        y = y.numpy()
        k = min(5, probs.shape[1])
        top = np.argsort(-probs, axis=1)[:, :k]
        y_pred[start : start + len(y)] = top[:, 0]
        top5_hit[start : start + len(y)] = (top == y[:, None]).any(axis=1)
        loss_sum += float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).sum())
        for pos in sorted(wanted & set(range(start, start + len(y)))):
            i = pos - start
            examples.append((np.asarray(x[i, :, :, 0]), int(y[i]), top[i], probs[i, top[i]]))
        start += len(y)
    return report.Evaluation(
        y_true=reader.labels[:start].copy(),
        y_pred=y_pred[:start],
        top5_hit=top5_hit[:start],
        loss=loss_sum / max(1, start),
        examples=examples,
    )


# ---- checks before spending time ----------------------------------------------------------------


def check_writable(out_dir: Path, need_bytes: int = MIN_FREE_BYTES, option: str = "--out") -> None:
    """Fail fast (before training) on a folder (`option`) that cannot be written or a disk without room."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"{option} {out_dir}: exists and is not a folder")
    # the export builds the new folder beside the old one (the link's target for a link) and swaps them
    target = out_dir.resolve() if out_dir.is_symlink() else out_dir
    for probe_dir in [target.parent, target] if target.is_dir() else [target.parent]:
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        try:
            with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise TrainError(f"{option} {out_dir}: cannot write in {probe_dir} ({exc.strerror or exc})") from None
    free = shutil.disk_usage(probe_dir).free
    if free < need_bytes:
        raise TrainError(
            f"{option} {out_dir}: only {free / 2**20:.0f} MiB free on its disk, need {need_bytes / 2**20:.0f} MiB"
        )


def check_paths(config: TrainConfig, data_dir: Path) -> None:
    """Refuse an --out or work folder that holds what the run reads or runs in: the export swaps --out
    away whole (`--out .` would link the folder into itself) and a finished run deletes its work folder."""
    out = Path(config.out_dir).resolve()
    work = config.resolved_work_dir().resolve()
    problem = not_replaceable(out, "--out")
    if problem:
        raise TrainError(problem)
    guarded = [
        ("the current folder", Path.cwd().resolve()),
        (f"the split {config.split_dir}", Path(config.split_dir).resolve()),
        (f"the data folder {data_dir}", Path(data_dir).resolve()),
    ]
    for what, path in guarded:
        if is_within(path, out):
            raise TrainError(
                f"--out {config.out_dir} is or holds {what}, which the export would swap away; "
                "choose a folder of its own"
            )
        if is_within(path, work):
            raise TrainError(
                f"work folder {work} is or holds {what}, and is deleted after the run; choose another --work-dir"
            )
    if is_within(work, out) or is_within(out, work):
        raise TrainError(f"--out {config.out_dir} and the work folder {work} must not hold one another")


def data_sources(split: Split) -> dict[str, int]:
    """Classes per source, from the data folder's manifest.json (download_subset.py writes it):
    "synthetic", the folder of the URLs downloaded, or "unrecorded". A model trained on made-up doodles,
    or on a mix, says so in its card."""
    try:
        recorded = read_manifest(split.data_dir)
    except DownloadError:  # another tool's manifest.json: it records nothing of ours
        recorded = {}
    sources: dict[str, int] = {}
    for entry in split.info["files"]:
        source = str(recorded.get(entry["file"], {}).get("source", "unrecorded"))
        source = source if source in ("synthetic", "unrecorded") else source.rsplit("/", 1)[0]
        sources[source] = sources.get(source, 0) + 1
    return sources


def split_fingerprint(split_dir: Path) -> str:
    """SHA-256 of split.json: it changes whenever the split is remade differently (classes, rows, seed)."""
    return hashlib.sha256((Path(split_dir) / SPLIT_FILE).read_bytes()).hexdigest()


def _setting(key: str, value) -> str:
    shown = "not given" if value is None else value
    return f"--{key.replace('_', '-')} {shown}"


def _resume_mismatch(old: dict, state: dict) -> list[str]:
    """What differs between an interrupted run's settings and this run's, as option phrases."""
    diffs = []
    for key, now in state.items():
        if key in ("format", "class_names") or key not in old or old[key] == now:  # not recorded: format 2
            continue
        if key == "split_sha256":
            if old.get("split") == state["split"]:
                diffs.append(f"--split {state['split']} as it was before it was remade")
        else:
            diffs.append(f"{_setting(key, old.get(key))} (now {'not given' if now is None else now})")
    return diffs


def _check_ours(work: Path) -> None:
    """A work folder is deleted whole: refuse one that holds anything a run did not put there."""
    if work.exists() and not work.is_dir():
        raise TrainError(f"work folder {work}: exists and is not a folder; choose another --work-dir")
    if work.is_dir():
        for child in work.iterdir():
            if child.name not in WORK_ENTRIES and not child.name.endswith(".part"):
                raise TrainError(
                    f"work folder {work} holds {child.name}, which training did not write; choose another --work-dir"
                )


_WORK_LOCKS: dict[Path, int] = {}  # work folder -> open descriptor holding its lock, for the run's length


def lock_work_dir(work: Path) -> None:
    """One run per work folder. Two runs of the same command (same --out) would otherwise train into,
    resume from and finally delete the same folder, and publish a model with an empty history. An
    advisory lock on the folder itself (where the OS has flock), released by `unlock_work_dirs`."""
    if work in _WORK_LOCKS:
        return
    try:
        fd = lock_folder(work, wait=False)
    except BlockingIOError:
        raise TrainError(
            f"work folder {work} is in use by another train_cnn.py run with the same --out; wait for it, "
            "or give this run another --out or --work-dir"
        ) from None
    except OSError as exc:  # a filesystem without locks, say
        raise TrainError(f"work folder {work}: cannot lock it ({exc.strerror or exc})") from None
    if fd is not None:
        _WORK_LOCKS[work] = fd


def unlock_work_dirs() -> None:
    """Release this process's work-folder locks (the run is over)."""
    while _WORK_LOCKS:
        os.close(_WORK_LOCKS.popitem()[1])


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def claim_work_dir(work: Path) -> None:
    """Make and lock the work folder before anything in it is read or deleted, or anything this run
    shares with another run of the same command is written (`--data` remakes the split first)."""
    _check_ours(work)
    try:  # emptied, never deleted, until the end
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"work folder {work}: cannot write ({exc.strerror or exc})") from None
    lock_work_dir(work)


def prepare_work_dir(config: TrainConfig, split: Split, task: Task) -> tuple[Path, int]:
    """The work folder for this task; refuses to resume a run made with other settings or another split.

    Resuming continues the optimizer, the schedule (built from epochs x steps) and the epoch count
    where they were, so every setting that shapes training must match, or the model card would be false.
    """
    work = config.resolved_work_dir()
    if task.num_workers > 1:
        work = work / f"{task.type}-{task.index}"
    split_dir = Path(config.split_dir)
    state = {
        "format": WORK_FORMAT,
        "class_names": split.class_names,
        "split": str(split_dir.resolve()),
        "split_sha256": split_fingerprint(split_dir),
        **config.training_settings(),
    }
    state_path = work / WORK_STATE
    claim_work_dir(work)
    if config.fresh:
        _empty(work)
    resumed_epoch = 0
    if state_path.is_file():
        try:
            old = json.loads(state_path.read_text())
        except ValueError:
            raise TrainError(f"work folder {work}: unreadable {WORK_STATE}; pass --fresh to start over") from None
        if old.get("format", 1) not in RESUMABLE_FORMATS:
            raise TrainError(
                f"{work}: holds an interrupted run of another version of train_cnn.py, which this one cannot "
                "resume; pass --fresh to discard it"
            )
        if old.get("class_names") != split.class_names:
            raise TrainError(
                f"{work}: holds an interrupted run on {len(old.get('class_names', []))} other classes than "
                f"the split's {len(split.class_names)}; pass --fresh to discard it"
            )
        diffs = _resume_mismatch(old, state)
        if diffs:
            raise TrainError(
                f"work folder {work} holds an interrupted run with {', '.join(diffs)}; "
                "rerun with the same options or pass --fresh"
            )
        for name in ("training_metadata.json", "training_metadata.json.bkp"):  # the epoch it reached
            try:
                resumed_epoch = int(json.loads((work / "backup" / name).read_text())["epoch"])
                break
            except (OSError, ValueError, KeyError, TypeError):
                continue
    else:
        _empty(work)  # stale pieces without a state: start clean
    try:
        write_text_atomic(state_path, json.dumps(state, indent=1))
    except OSError as exc:
        raise TrainError(f"work folder {work}: cannot write ({exc.strerror or exc})") from None
    return work, resumed_epoch


# ---- the run ------------------------------------------------------------------------------------


def resolve_precision(precision: str) -> str:
    """`auto`: bfloat16 compute where the hardware does it natively (a GPU, or a CPU with AVX512_BF16 / AMX),
    float32 elsewhere, since emulated bfloat16 is slower than float32."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def configure(precision: str, seed: int) -> None:
    """Global numeric policy and seeds (call before building a model)."""
    if precision not in PRECISIONS:
        raise TrainError(f"unknown --precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(seed)


def export_copy(model: keras.Model, arch: str, num_classes: int, tta: str = "none") -> keras.Model:
    """The same weights in a float32-policy model of plain Keras layers: the exported files then load in
    any Keras without our classes, run anywhere in float32 (mixed_bfloat16 keeps float32 master weights,
    so nothing is lost), and ONNX gets float32 ops. `tta="flip"` wraps it in `mirror_averaged`."""
    keras.mixed_precision.set_global_policy("float32")
    copy = ARCHITECTURES[arch](num_classes)
    copy.set_weights([keras.ops.convert_to_numpy(w) for w in model.weights])
    return mirror_averaged(copy) if tta == "flip" else copy


def weights_digest(weights: Sequence) -> float:
    """A number that differs when any weight differs (to compare workers' copies of one model)."""
    return float(sum(np.abs(keras.ops.convert_to_numpy(w).astype(np.float64)).sum() for w in weights))


def train(
    config: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Train, evaluate on test, export the model and write reports; returns the metrics dict.

    The Keras precision policy is global: it is put back as it was, whether training ends or fails, so
    models built afterwards in the same process (a notebook, the tests) are not silently bfloat16.
    """
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(config, callbacks, strategy)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        unlock_work_dirs()


def _train(
    config: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback],
    strategy: tf.distribute.Strategy | None,
) -> dict:
    t_start = time.perf_counter()
    run_started = time.time()  # export folders of killed runs older than this are cleaned up
    if config.arch not in ARCHITECTURES:
        raise TrainError(f"unknown --arch {config.arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if config.augment not in AUGMENTATIONS:
        raise TrainError(f"unknown --augment {config.augment!r}; choose from {', '.join(AUGMENTATIONS)}")
    if config.tta not in TEST_TIME_AUGMENTATIONS:
        raise TrainError(f"unknown --tta {config.tta!r}; choose from {', '.join(TEST_TIME_AUGMENTATIONS)}")
    if config.batch_size < 1 or not 1 <= config.epochs <= MAX_EPOCHS:
        raise TrainError(f"--batch-size must be at least 1 and --epochs in [1, {MAX_EPOCHS}]")
    if not 0.0 <= config.dropout_scale <= 1.0:
        raise TrainError(f"--dropout-scale must be in [0, 1], got {config.dropout_scale}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0.0 <= config.warmup_epochs <= MAX_EPOCHS:
        raise TrainError(f"--warmup-epochs must be in [0, {MAX_EPOCHS}], got {config.warmup_epochs}")
    if not 0 <= config.seed <= MAX_SEED:
        raise TrainError(f"--seed must be in [0, {MAX_SEED}], got {config.seed}")
    task = cluster_task() if config.strategy == "multiworker" else Task()
    if strategy is None:
        strategy = make_strategy(config.strategy)
    config.precision = resolve_precision(config.precision)
    configure(config.precision, config.seed)
    if task.is_chief:  # only the chief writes the model and the figures
        check_writable(Path(config.out_dir))
        if config.screenshots_dir is not None:
            check_writable(Path(config.screenshots_dir), FIGURES_BYTES, "--screenshots")
    work_option = "work folder" if config.work_dir is None else "--work-dir"
    check_writable(config.resolved_work_dir(), MIN_FREE_BYTES, work_option)  # every task keeps its backups
    split = Split.load(config.split_dir)
    check_paths(config, split.data_dir)
    class_names = split.class_names
    num_classes = len(class_names)
    if num_classes < 2:
        raise TrainError(f"{config.split_dir}: the split has {num_classes} class; a classifier needs at least 2")
    workers = task.num_workers
    if config.batch_size % (strategy.num_replicas_in_sync or 1):
        raise TrainError(
            f"--batch-size {config.batch_size} must divide by the {strategy.num_replicas_in_sync} replicas"
        )
    replica_batch = config.batch_size // strategy.num_replicas_in_sync
    shard = (workers, task.rank)
    train_reader = PartReader(split, "train", config.in_memory_bytes, shard)
    val_reader = PartReader(split, "val", config.in_memory_bytes, shard)
    if len(train_reader) < replica_batch * (strategy.num_replicas_in_sync // workers):
        raise TrainError(
            f"{config.split_dir}: {len(train_reader)} training drawings per worker, fewer than one batch "
            f"of {config.batch_size}; use a smaller --batch-size"
        )
    if len(val_reader) == 0:
        raise TrainError(f"{config.split_dir}: the split has no validation drawings")
    if len(split.index["test"]) == 0:  # the final evaluation would fail only after all the training
        raise TrainError(f"{config.split_dir}: the split has no test drawings (remake it with --test-fraction > 0)")
    steps = len(train_reader) * workers // config.batch_size
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    work, resumed_epoch = prepare_work_dir(config, split, task)
    worker_batch = replica_batch * (strategy.num_replicas_in_sync // workers)
    data_kw = {"num_classes": num_classes, "label_smoothing": config.label_smoothing}

    def train_fn(ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        bs = ctx.get_per_replica_batch_size(config.batch_size) if ctx else config.batch_size
        return train_reader.dataset(bs, True, config.seed, config.augment, **data_kw)

    def val_fn(ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        bs = ctx.get_per_replica_batch_size(config.batch_size) if ctx else config.batch_size
        return val_reader.dataset(bs, False, **data_kw)

    if config.strategy == "multiworker":
        train_ds = strategy.distribute_datasets_from_function(train_fn)
        val_ds = strategy.distribute_datasets_from_function(val_fn)
    else:
        train_ds, val_ds = train_fn(), val_fn()
    val_steps = math.ceil(len(val_reader) / worker_batch)

    with strategy.scope():
        model = build_model(config, num_classes, steps)
    if config.strategy == "multiworker":
        _work_around_keras_multiworker(model, num_classes, config.label_smoothing > 0)
    keeper = BestKeeper(work, config.patience, start_from_epoch=config.epochs // 2)
    timer = EpochTimer()
    backup = Backup(work / "backup")
    all_callbacks = [
        StopOnDivergence(),  # first: before the backup, the best checkpoint and the history keep the epoch
        backup,
        timer,
        keeper,
        keras.callbacks.CSVLogger(str(work / HISTORY_FILE), append=True),
        *callbacks,
    ]
    # an interrupted run that had already stopped early trains no further (fit runs no epoch then)
    last_epoch = resumed_epoch if keeper.stopped_early_at is not None else config.epochs
    t_fit = time.perf_counter()
    model.fit(
        train_ds,
        epochs=last_epoch,
        steps_per_epoch=steps,
        validation_data=val_ds,
        validation_steps=val_steps,
        callbacks=all_callbacks,
        verbose=config.verbose,
        shuffle=False,  # the pipeline shuffles (positions, every epoch)
    )
    fit_seconds = time.perf_counter() - t_fit
    resumed_epoch = backup.restored_epoch  # where the restore really started (a torn backup falls back)
    history = read_history(work / HISTORY_FILE)
    trained_epochs = sorted(timer.times)
    train_seconds = sum(timer.times.values())
    drawings = sum(timer.steps[e] for e in trained_epochs) * config.batch_size
    summary = {
        "task": asdict(task) | {"is_chief": task.is_chief},
        "shard_size": len(train_reader),
        "steps_per_epoch": steps,
        "optimizer_iterations": keeper.final_iterations,
        "initial_epoch": resumed_epoch,
        "epochs_run_this_time": len(trained_epochs),
        # trainable weights are kept identical on every worker; batch-norm moving statistics are
        # per worker (each sees its own shard), and the chief's are the ones exported
        "trainable_digest": weights_digest(model.trainable_weights),
        "weights_digest": weights_digest(model.weights),
    }
    if task.num_workers > 1:  # one line per worker, so an operator (and the test) can compare them
        print("TRAIN_SUMMARY " + json.dumps(summary), flush=True)

    model = export_copy(model, config.arch, num_classes, config.tta)  # what is shipped, and what test measures
    if not task.is_chief:  # standard multi-worker pattern: non-chiefs write to a throwaway folder
        tmp = Path(tempfile.mkdtemp(prefix=f"worker-{task.index}-"))
        try:
            from .export import export_model

            export_model(model, class_names, tmp / "model", {}, onnx=False, verify=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        _remove_if_empty(config.resolved_work_dir())
        return {"summary": summary}

    test_reader = PartReader(split, "test", config.in_memory_bytes)
    t_eval = time.perf_counter()
    evaluation = predict_part(model, test_reader, max(config.batch_size, 256), seed=config.seed)
    eval_seconds = time.perf_counter() - t_eval
    timing = {
        "fit_seconds": fit_seconds,
        "train_seconds_this_run": train_seconds,
        "train_drawings_this_run": drawings,
        "train_drawings_per_second": drawings / train_seconds if train_seconds else None,
        "gflops_per_second": (drawings / train_seconds * FLOP_PER_TRAINED_DRAWING / 1e9) if train_seconds else None,
        "test_seconds": eval_seconds,
        "test_drawings_per_second": len(test_reader) / eval_seconds if eval_seconds else None,
        "total_seconds": time.perf_counter() - t_start,
    }
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k not in ("extra_card", "verbose")
    }
    metrics = report.summarize(evaluation, class_names, history, timing)
    metrics["config"] = settings
    metrics["split"] = {"dir": str(config.split_dir), **{k: split.info.get(k) for k in ("counts", "seed")}}
    metrics["best_epoch"] = keeper.state["epoch"] + 1
    metrics["stopped_early"] = keeper.stopped_early_at is not None
    metrics["initial_epoch"] = resumed_epoch
    metrics["training"] = summary
    card = {
        "architecture": config.arch,
        "data": {
            "split": str(config.split_dir),
            "data_dir": str(config.data_dir or split.data_dir),
            "counts": split.info.get("counts"),
            "max_per_class": split.info.get("max_per_class"),
            "sources": data_sources(split),
        },
        "metrics": {k: metrics["test"][k] for k in ("top1_accuracy", "top5_accuracy", "loss")},
        "epochs": len(history.get("epoch", [])),
        "best_epoch": metrics["best_epoch"],
        "training": {
            k: settings[k]
            for k in (
                "batch_size",
                "learning_rate",
                "weight_decay",
                "precision",
                "augment",
                "dropout_scale",
                "tta",
                "label_smoothing",
                "strategy",
            )
        },
        **config.extra_card,
    }
    from .export import ExportError, export_model

    try:  # the reports go in with the model files, in one swap
        texts = report.report_texts(class_names, evaluation, metrics)
        export_model(
            model, class_names, config.out_dir, card, onnx=config.onnx, extra_files=texts, stale_before=run_started
        )
    except ExportError as exc:
        raise TrainError(str(exc)) from None
    figures_failed = None
    if config.screenshots_dir is not None:
        try:
            report.write_figures(config.screenshots_dir, class_names, evaluation, history, metrics)
        except OSError as exc:
            figures_failed = TrainError(
                f"--screenshots {config.screenshots_dir}: figures not written ({exc.strerror or exc}); "
                f"the model in {config.out_dir} is complete"
            )
    # done: nothing left to resume (kept until now, so Ctrl-C during the figures can be rerun to finish)
    shutil.rmtree(work, ignore_errors=True)
    _remove_if_empty(config.resolved_work_dir())  # the multi-worker root, once every task is done
    if figures_failed is not None:
        raise figures_failed
    return metrics


def check_split_remake(config: TrainConfig, max_per_class: int | None) -> None:
    """With --data, before the split is remade: an interrupted run in the work folder needs its split as
    it is, so remaking it with other options is refused, naming them (the resume check, made once the
    split exists, could only say that the split had changed, after the split it needed was gone)."""
    work = config.resolved_work_dir()
    if config.fresh or config.data_dir is None or not (work / WORK_STATE).is_file():
        return
    try:
        info = json.loads((Path(config.split_dir) / SPLIT_FILE).read_text())
    except (OSError, ValueError):
        return  # no split to keep; resuming says what is wrong
    if not isinstance(info, dict):
        return
    now = {"--data": str(Path(config.data_dir).resolve()), "--max-per-class": max_per_class, "--seed": config.seed}
    was = {
        "--data": info.get("data_dir_absolute"),
        "--max-per-class": info.get("max_per_class"),
        "--seed": info.get("seed"),
    }
    diffs = [
        f"{k} {'not given' if was[k] is None else was[k]} (now {'not given' if now[k] is None else now[k]})"
        for k in now
        if was[k] != now[k]
    ]
    if not diffs:  # the same options; the data folder may still have changed (a class or rows added)
        try:
            files = scan_data_dir(config.data_dir)
        except DatasetError:
            return  # making the split says what is wrong
        rows = {f.name: f.rows if max_per_class is None else min(f.rows, max_per_class) for f in files}
        if rows != {f.get("name"): f.get("used") for f in info.get("files", []) if isinstance(f, dict)}:
            diffs = [f"other drawings in --data {config.data_dir} (classes or rows added or removed since)"]
    if diffs:
        raise TrainError(
            f"work folder {work} holds an interrupted run on the split {config.split_dir} made with "
            f"{', '.join(diffs)}; rerun with the same options or pass --fresh"
        )


def make_split_from(data_dir: Path, split_dir: Path, max_per_class: int | None, seed: int) -> dict:
    """Write a split of `data_dir` into `split_dir` (what get_dataset.py does), for `--data`."""
    try:
        return write_split(data_dir, split_dir, max_per_class=max_per_class, seed=seed, option="--split")
    except OSError as exc:
        raise TrainError(f"{split_dir}: cannot write the split ({exc.strerror or exc})") from None


__all__ = [
    "DatasetError",
    "PartReader",
    "TrainConfig",
    "TrainError",
    "build_model",
    "check_paths",
    "check_split_remake",
    "claim_work_dir",
    "make_split_from",
    "random_affine",
    "train",
]
