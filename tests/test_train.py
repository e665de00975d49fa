"""Training on synthetic doodles: learns, serializes, resumes, trains on two workers, refuses bad input.

Small on purpose (CI has 2 cores): a few hundred drawings of a few shapes, a few short epochs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from quickdraw_cnn.dataset import DatasetError, Split, write_split
from quickdraw_cnn.synthetic import write_synthetic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "line", "square", "triangle", "zigzag"]
MODEL_FILES = ["model.json", "model.h5", "class_names.txt", "model.keras", "model_card.json"]


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("train")
    write_synthetic(base / "data", categories=CLASSES, per_class=240, seed=1)
    write_split(base / "data", base / "split", seed=0)
    return base / "split"


@pytest.fixture(scope="module")
def trained(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One short real run through `train` (all files, ONNX included): reused by the tests below."""
    from quickdraw_cnn.train import TrainConfig, train

    base = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        split_dir=split_dir,
        out_dir=base / "models",
        screenshots_dir=base / "shots",
        epochs=4,
        batch_size=32,
        learning_rate=3e-3,
        warmup_epochs=0.5,
        verbose=0,
    )
    return base, train(config)


def test_short_run_learns_and_reports(trained: tuple[Path, dict]) -> None:
    base, metrics = trained
    chance = 1 / len(CLASSES)
    assert metrics["test"]["top1_accuracy"] >= 2.5 * chance, metrics["test"]
    assert metrics["test"]["top5_accuracy"] >= metrics["test"]["top1_accuracy"]
    assert metrics["test"]["drawings"] == 5 * 24
    assert sorted(metrics["per_class"]) == CLASSES
    assert metrics["history"]["epoch"] == [1, 2, 3, 4]  # numbered from 1, like best_epoch
    for key in ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy"):
        assert len(metrics["history"][key]) == 4, key
    assert metrics["timing"]["train_drawings_per_second"] > 0
    out = base / "models"
    for name in [*MODEL_FILES, "model.onnx", "metrics.json", "classification_report.txt"]:
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["test"] == pytest.approx(metrics["test"])
    report = (out / "classification_report.txt").read_text()
    assert "top-1 accuracy" in report and all(c in report for c in CLASSES)
    assert (out / "class_names.txt").read_text().split("\n")[:-1] == CLASSES
    card = json.loads((out / "model_card.json").read_text())
    assert card["num_classes"] == len(CLASSES)
    assert card["data"]["sources"] == {"unrecorded": len(CLASSES)}  # write_synthetic keeps no manifest
    assert card["metrics"]["top1_accuracy"] == pytest.approx(metrics["test"]["top1_accuracy"])
    for shot in ("training_curves.png", "confused_pairs.png", "prediction_result.png", "confusion_matrix.png"):
        assert (base / "shots" / shot).stat().st_size > 1000, shot
    assert not (base / ".models-train").exists()  # work folder cleaned up after success


def test_serialized_model_reloads_both_ways(trained: tuple[Path, dict], split_dir: Path) -> None:
    import keras

    from quickdraw_cnn.dataset import Split

    out = trained[0] / "models"
    x = Split.load(split_dir).images("test", np.arange(16))
    a = keras.models.model_from_json((out / "model.json").read_text())
    a.load_weights(out / "model.h5")
    b = keras.models.load_model(out / "model.h5", compile=False)
    c = keras.models.load_model(out / "model.keras", compile=False)
    pa, pb, pc = (np.asarray(m.predict(x, verbose=0)) for m in (a, b, c))
    np.testing.assert_allclose(pa, pb, atol=1e-6)
    np.testing.assert_allclose(pa, pc, atol=1e-6)
    assert pa.shape == (16, len(CLASSES))
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, atol=1e-5)
    # the default --tta flip: every reload answers the same for a drawing and its mirror image
    np.testing.assert_allclose(np.asarray(b.predict(x[:, :, ::-1], verbose=0)), pa, atol=1e-6)
    assert json.loads((out / "model_card.json").read_text())["training"]["tta"] == "flip"


class Interrupt(Exception):
    pass


def test_resume_continues_and_keeps_previous_model(trained: tuple[Path, dict], split_dir: Path, tmp_path: Path) -> None:
    import keras

    from quickdraw_cnn.train import TrainConfig, TrainError, train

    out = tmp_path / "models"
    shutil.copytree(trained[0] / "models", out)  # "the previous good model"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Interrupt("killed after epoch 1")

    config = TrainConfig(
        split_dir=split_dir,
        out_dir=out,
        screenshots_dir=None,
        epochs=3,
        batch_size=32,
        max_steps_per_epoch=4,
        patience=0,
        onnx=False,
        verbose=0,
    )
    with pytest.raises(Interrupt):
        train(config, callbacks=[StopAfterFirstEpoch()])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched by the interrupted run
    work = tmp_path / ".models-train"
    assert json.loads((work / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    # another split (other classes) must not resume this run
    other = tmp_path / "other"
    write_synthetic(other / "data", categories=["circle", "star"], per_class=20)
    write_split(other / "data", other / "split")
    with pytest.raises(TrainError, match="other classes"):
        train(TrainConfig(split_dir=other / "split", out_dir=out, epochs=3, batch_size=8, verbose=0))
    # nor may a version whose weight files hold other layers (run.json without "format": before version 2)
    state = json.loads((work / "run.json").read_text())
    (work / "run.json").write_text(json.dumps({k: v for k, v in state.items() if k != "format"}))
    with pytest.raises(TrainError, match="another version of train_cnn.py"):
        train(config)
    (work / "run.json").write_text(json.dumps(state))

    metrics = train(config)
    assert metrics["initial_epoch"] == 1
    assert metrics["training"]["epochs_run_this_time"] == 2
    assert metrics["history"]["epoch"] == [1, 2, 3]  # epoch 1 from the first run, kept
    assert metrics["training"]["optimizer_iterations"] == 3 * 4  # the optimizer state was restored too
    assert (out / "model.h5").read_bytes() != before["model.h5"]
    assert not work.exists()


def test_flip_augmentation_mirrors_about_half_and_keeps_labels(split_dir: Path) -> None:
    from quickdraw_cnn.dataset import Split
    from quickdraw_cnn.train import PartReader

    split = Split.load(split_dir)
    reader = PartReader(split, "train", in_memory_bytes=1 << 30)
    n = len(reader)
    originals = split.images("train", np.arange(n))
    x, y = next(iter(reader.dataset(n, training=True, seed=0, augment="flip")))
    x, y = np.asarray(x), np.asarray(y)
    # training batches are shuffled: find each drawing's source by its label and pixels
    source = {(int(lab), img.tobytes()): i for i, (lab, img) in enumerate(zip(split.labels("train"), originals))}
    kept = mirrored = 0
    for img, lab in zip(x, y):
        if (int(lab), img.tobytes()) in source:
            kept += 1
        elif (int(lab), img[:, ::-1].tobytes()) in source:
            mirrored += 1
    assert kept + mirrored == n  # every drawing is itself or its mirror image, under its own label
    assert 0.35 * n < mirrored < 0.65 * n


def test_a_streamed_part_gives_the_batches_of_an_in_memory_one(split_dir: Path, monkeypatch) -> None:
    """A part too big for memory is read many batches per call (READ_ROWS), then cut into batches."""
    from quickdraw_cnn import train as tr

    monkeypatch.setattr(tr, "READ_ROWS", 20)  # two batches of 7 per read, so reads are cut
    split = Split.load(split_dir)
    memory, streamed = tr.PartReader(split, "val", 1 << 30), tr.PartReader(split, "val", 0)
    assert memory.in_memory and not streamed.in_memory and len(streamed) % 14 not in (0, 7)
    want = [(np.asarray(x), np.asarray(y)) for x, y in memory.dataset(7, training=False)]
    got = [(np.asarray(x), np.asarray(y)) for x, y in streamed.dataset(7, training=False)]
    assert [len(y) for _, y in got] == [len(y) for _, y in want] and sum(len(y) for _, y in got) == len(streamed)
    for (xw, yw), (xg, yg) in zip(want, got):
        np.testing.assert_array_equal(xg, xw)
        np.testing.assert_array_equal(yg, yw)

    train_part = tr.PartReader(split, "train", 0)
    drawings = {(int(y), x.tobytes()) for x, y in zip(split.images("train"), split.labels("train"))}
    batches = train_part.dataset(7, training=True, seed=0, augment="none").take(2 * len(train_part) // 7 + 1)
    pairs = [(int(y), np.asarray(x).tobytes()) for xs, ys in batches for x, y in zip(xs, ys)]
    assert len(pairs) == 7 * (2 * len(train_part) // 7 + 1)  # whole batches across the epochs' seam
    assert set(pairs) == drawings  # every drawing, each with its own label


def test_exit_gate_waits_for_running_reads_then_ends_new_ones() -> None:
    from quickdraw_cnn.train import ExitGate

    gate = ExitGate(quiet=0.05, limit=5.0)
    t = time.monotonic()
    gate.close()  # never used: nothing to wait for
    assert time.monotonic() - t < 0.05

    gate, finished = ExitGate(quiet=0.05, limit=5.0), []

    def slow_read() -> None:
        with gate:
            time.sleep(0.3)
        finished.append(time.monotonic())

    reader = threading.Thread(target=slow_read)
    reader.start()
    time.sleep(0.05)
    gate.close()  # waits for the running read, then for `quiet` without one
    assert finished and time.monotonic() - finished[0] >= 0.04
    reader.join()
    with pytest.raises(StopIteration, match="exiting"):
        with gate:
            pass


LIVE_ITERATOR = """
import sys
sys.path.insert(0, sys.argv[1])
from quickdraw_cnn.dataset import Split
from quickdraw_cnn.train import PartReader

reader = PartReader(Split.load(sys.argv[2]), "train", in_memory_bytes=0)
BATCHES = iter(reader.dataset(16, training=True, augment="flip+affine"))  # alive until the exit
next(BATCHES)
print("read", flush=True)
"""


def test_a_live_iterator_over_a_streamed_part_lets_python_exit(split_dir: Path, tmp_path: Path) -> None:
    """Python stops a TensorFlow thread that asks for the GIL while it exits; a read caught there never
    returned, and the exit waited for it forever (4 exits in 6 hung before ExitGate)."""
    script = tmp_path / "live_iterator.py"
    script.write_text(LIVE_ITERATOR)
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, str(script), str(ROOT), str(split_dir)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and done.stdout == "read\n", done.stderr[-2000:]
        assert "Traceback" not in done.stderr


def test_weight_decay_shrinks_kernels_only() -> None:
    import keras

    from quickdraw_cnn.train import TrainConfig, build_model

    model = build_model(TrainConfig(learning_rate=1e-2, warmup_epochs=0, weight_decay=0.5), 5, steps_per_epoch=10)
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    model.optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])  # decay alone acts
    for v, old in zip(variables, before):
        new = np.array(v)
        if v.path.endswith("kernel"):
            np.testing.assert_allclose(new, old * (1 - 1e-2 * 0.5), rtol=1e-5, atol=1e-7)
        else:  # biases, batch-norm gamma/beta: not decayed
            np.testing.assert_array_equal(new, old)


def test_early_stopping_waits_for_the_second_half(tmp_path: Path) -> None:
    """Val loss wobbling while the learning rate is high must not stop a run; the best weights still win."""
    import keras

    from quickdraw_cnn.train import BestKeeper

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    keeper = BestKeeper(tmp_path, patience=2, start_from_epoch=4)
    keeper.set_model(model)
    keeper.on_train_begin()
    model.stop_training = False  # as fit() sets it
    losses = [1.0, 0.5, 0.9, 0.8, 0.7, 0.6, 0.55]  # best at epoch 1, then 5 epochs without a better one
    stopped_at = None
    for epoch, loss in enumerate(losses):
        model.layers[0].bias.assign([float(epoch)])  # marks which epoch's weights were saved
        keeper.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            stopped_at = epoch
            break
    assert stopped_at == 5  # epochs 2-3 are before start_from_epoch; 4 and 5 use up the patience of 2
    keeper.on_train_end()
    assert keeper.state["epoch"] == 1 and float(model.layers[0].bias[0]) == 1.0


def test_no_space_is_refused_before_training(split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quickdraw_cnn import train as train_mod

    class Usage:
        total, used, free = 10**9, 10**9 - 1000, 1000

    monkeypatch.setattr(train_mod.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(train_mod.TrainError, match="MiB free"):
        train_mod.train(train_mod.TrainConfig(split_dir=split_dir, out_dir=tmp_path / "m", verbose=0))
    assert not (tmp_path / "m").exists()


def test_library_callers_get_the_same_one_line_refusals(split_dir: Path, tmp_path: Path) -> None:
    """The app team may call train() without the CLI's argparse checks: bad settings still fail cleanly."""
    from quickdraw_cnn.train import TrainConfig, TrainError, train

    for bad, message in [
        ({"dropout_scale": 1.5}, "--dropout-scale"),
        ({"augment": "twirl"}, "--augment"),
        ({"tta": "rotate"}, "--tta"),
        ({"label_smoothing": 7.0}, "--label-smoothing"),
        ({"warmup_epochs": 1e308}, "--warmup-epochs"),
        ({"seed": 2**32}, "--seed"),
        ({"epochs": 10**6}, "--epochs"),
    ]:
        with pytest.raises(TrainError, match=message):
            train(TrainConfig(split_dir=split_dir, out_dir=tmp_path / "m", verbose=0, **bad))
    assert not (tmp_path / "m").exists() and not (tmp_path / ".m-train").exists()


def _cli(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train_cnn.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_cli_bad_inputs(split_dir: Path, tmp_path: Path) -> None:
    missing = _cli("--split", str(tmp_path / "nope"), "--out", str(tmp_path / "m"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"train_cnn.py: error: no split in {tmp_path / 'nope'} (missing split.json; run get_dataset.py first)"
    ]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    unwritable = _cli("--split", str(split_dir), "--out", str(blocker / "models"))
    assert unwritable.returncode == 1
    lines = unwritable.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_cnn.py: error: --out"), unwritable.stderr
    assert not (tmp_path / ".models-train").exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--patience", "-1"),
        ("--seed", "-1"),
        ("--weight-decay", "-0.1"),
        ("--weight-decay", "inf"),
        ("--dropout-scale", "1.5"),
        ("--dropout-scale", "-0.5"),
        ("--warmup-epochs", "inf"),
        ("--learning-rate", "0"),
        ("--learning-rate", "nan"),
        ("--epochs", "0"),
        ("--batch-size", "x"),
        ("--epochs", "1000000"),
        ("--seed", "4294967296"),
        ("--warmup-epochs", "1e308"),
        ("--label-smoothing", "7"),
        ("--label-smoothing", "1"),
    ],
)
def test_cli_refuses_bad_numbers(option: str, value: str, split_dir: Path, tmp_path: Path) -> None:
    """Caught by argparse before TensorFlow loads: usage, one error line naming the option, exit 2."""
    run = _cli("--split", str(split_dir), "--out", str(tmp_path / "m"), option, value)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith(f"train_cnn.py: error: argument {option}: must be")
    assert not (tmp_path / "m").exists() and not (tmp_path / ".m-train").exists()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_two_workers_train_one_model(split_dir: Path, tmp_path: Path) -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "models"
    args = [
        sys.executable, str(ROOT / "train_cnn.py"), "--strategy", "multiworker", "--split", str(split_dir),
        "--out", str(out), "--screenshots", str(tmp_path / "shots"), "--epochs", "2", "--batch-size", "32",
        "--max-steps-per-epoch", "6", "--no-onnx", "--quiet",
    ]  # fmt: skip
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    summaries = [
        json.loads(line.split(" ", 1)[1])
        for text in outputs
        for line in text.splitlines()
        if line.startswith("TRAIN_SUMMARY ")
    ]
    assert [s["task"]["index"] for s in summaries] == [0, 1]
    assert [s["task"]["is_chief"] for s in summaries] == [True, False]
    n_train = json.loads((split_dir / "split.json").read_text())["counts"]["train"]
    for s in summaries:
        assert s["shard_size"] == n_train // 2  # each worker reads its own half
        assert s["steps_per_epoch"] == 6 and s["optimizer_iterations"] == 12
    # one model: identical trainable weights on both workers after the same steps
    assert summaries[0]["trainable_digest"] == pytest.approx(summaries[1]["trainable_digest"], rel=1e-6)
    for name in MODEL_FILES:
        assert (out / name).is_file(), name  # written by the chief only
    assert not list(tmp_path.glob(".models-train*"))


# ---- refusals before training, and resuming only what was interrupted -------------------------------


def _quick_config(split_dir: Path, base: Path, **kw):
    from quickdraw_cnn.train import TrainConfig

    settings = dict(
        split_dir=split_dir,
        out_dir=base / "models",
        screenshots_dir=base / "shots",
        work_dir=base / "work",
        epochs=2,
        batch_size=32,
        max_steps_per_epoch=2,
        onnx=False,
        verbose=0,
    )
    return TrainConfig(**{**settings, **kw})


def test_resume_refuses_changed_settings_or_split(split_dir: Path, tmp_path: Path) -> None:
    """An interrupted run resumes only with the settings and split it was started with, else one line."""
    from quickdraw_cnn.train import Task, TrainError, prepare_work_dir

    split = Split.load(split_dir)
    work, resumed = prepare_work_dir(_quick_config(split_dir, tmp_path, batch_size=8), split, Task())
    assert resumed == 0 and (work / "run.json").is_file()
    for change, message in [
        ({"batch_size": 16}, "--batch-size 8 (now 16)"),
        ({"learning_rate": 1e-3}, "--learning-rate 0.003 (now 0.001)"),
        ({"epochs": 3, "seed": 5}, "--epochs 2 (now 3), --seed 0 (now 5)"),
        ({"warmup_epochs": 2.0}, "--warmup-epochs 1.0 (now 2.0)"),
        ({"max_steps_per_epoch": None}, "--max-steps-per-epoch 2 (now not given)"),
    ]:
        with pytest.raises(TrainError) as err:
            prepare_work_dir(_quick_config(split_dir, tmp_path, **{"batch_size": 8, **change}), split, Task())
        text = str(err.value)
        assert "\n" not in text and message in text and text.endswith("pass --fresh"), text
    # settings that do not shape the weights may change: the output folders, ONNX, test-time averaging
    same = _quick_config(split_dir, tmp_path / "elsewhere", batch_size=8, work_dir=work, onnx=True, tta="none")
    assert prepare_work_dir(same, split, Task()) == (work, 0)
    # the same classes, split again with another seed (another split.json), in another folder or in place
    other = tmp_path / "other-split"
    write_split(split_dir.parent / "data", other, seed=7)
    with pytest.raises(TrainError, match=f"--split {split_dir.resolve()} \\(now {other.resolve()}\\)"):
        prepare_work_dir(_quick_config(other, tmp_path, batch_size=8), Split.load(other), Task())
    moved = tmp_path / "remade"
    shutil.copytree(split_dir, moved)
    prepare_work_dir(_quick_config(moved, tmp_path, batch_size=8, fresh=True), Split.load(moved), Task())
    write_split(split_dir.parent / "data", moved, seed=7)
    with pytest.raises(TrainError, match="as it was before it was remade"):
        prepare_work_dir(_quick_config(moved, tmp_path, batch_size=8), Split.load(moved), Task())


def test_a_run_interrupted_before_stop_13_still_resumes(split_dir: Path, tmp_path: Path) -> None:
    """Format 2 work folders (run.json with a few settings) hold the same weight files: they resume, and
    the settings they did record are still checked."""
    from quickdraw_cnn.train import Task, TrainError, prepare_work_dir

    split = Split.load(split_dir)
    config = _quick_config(split_dir, tmp_path, batch_size=8)
    work, _ = prepare_work_dir(config, split, Task())
    old = {"format": 2, "class_names": split.class_names, "arch": "labs21", "split_dir": str(split_dir.resolve())}
    (work / "run.json").write_text(json.dumps({**old, "batch_size": 8, "precision": config.precision}))
    assert prepare_work_dir(_quick_config(split_dir, tmp_path, batch_size=8), split, Task()) == (work, 0)
    (work / "run.json").write_text(json.dumps({**old, "batch_size": 8, "precision": config.precision}))
    with pytest.raises(TrainError, match="--batch-size 8 \\(now 16\\)"):
        prepare_work_dir(_quick_config(split_dir, tmp_path, batch_size=16), split, Task())
    (work / "run.json").write_text(json.dumps({**old, "format": 1}))
    with pytest.raises(TrainError, match="another version of train_cnn.py"):
        prepare_work_dir(config, split, Task())


def test_a_work_folder_in_use_by_another_run_is_refused(split_dir: Path, tmp_path: Path) -> None:
    """Two runs of one command would train into, and finally delete, the same work folder."""
    from quickdraw_cnn.train import Task, TrainError, prepare_work_dir, unlock_work_dirs

    config = _quick_config(split_dir, tmp_path, batch_size=8)
    work, _ = prepare_work_dir(config, Split.load(split_dir), Task())
    unlock_work_dirs()  # as train() does at its end
    hold = "import fcntl, os, sys, time; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); print(1)"
    other = subprocess.Popen([sys.executable, "-c", hold + "; time.sleep(60)", str(work)], stdout=subprocess.PIPE)
    try:
        assert other.stdout.readline().strip() == b"1"  # the other run holds the folder now
        for fresh in (False, True):
            again = _quick_config(split_dir, tmp_path, batch_size=8, fresh=fresh)
            with pytest.raises(TrainError, match="is in use by another train_cnn.py run with the same --out"):
                prepare_work_dir(again, Split.load(split_dir), Task())
        assert (work / "run.json").is_file()  # --fresh did not delete it under the other run
    finally:
        other.kill()
        other.wait()
    assert prepare_work_dir(config, Split.load(split_dir), Task()) == (work, 0)
    unlock_work_dirs()


def test_data_run_refused_by_the_lock_leaves_the_split_alone(split_dir: Path, tmp_path: Path) -> None:
    """`--data` remakes the split: a second run of the same --out must be refused before it does."""
    data = tmp_path / "data"
    shutil.copytree(split_dir.parent / "data", data)
    split = tmp_path / "split"
    write_split(data, split, seed=0)
    before = (split / "split.json").read_bytes()
    work = tmp_path / ".models-train"  # the default work folder of --out tmp_path/models
    work.mkdir()
    hold = "import fcntl, os, sys, time; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); print(1)"
    other = subprocess.Popen([sys.executable, "-c", hold + "; time.sleep(120)", str(work)], stdout=subprocess.PIPE)
    try:
        assert other.stdout.readline().strip() == b"1"
        args = ["--data", str(data), "--split", str(split), "--out", str(tmp_path / "models"), "--seed", "5"]
        run = _cli(*args, "--epochs", "1", "--quiet")
    finally:
        other.kill()
        other.wait()
    assert run.returncode == 1
    assert "is in use by another train_cnn.py run" in run.stderr
    assert (split / "split.json").read_bytes() == before  # not remade with --seed 5 under the other run


@pytest.mark.parametrize(
    "tf_config,message",
    [
        ("[]", "TF_CONFIG must be"),
        ("{not json", "not valid JSON"),
        ('{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}', "must be a list"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', "index 3 is outside"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}', "not one of the"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": "x"}}', "not a whole number"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": true}}', "True is not a whole"),
        ('{"cluster": {"worker": ["localhost:1", "b:2"]}, "task": {"type": "worker", "index": 1.5}}', "not a whole"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker"}}', "None is not a whole"),
        ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "evaluator", "index": 0}}', "not supported"),
    ],
)
def test_malformed_tf_config_is_one_line(monkeypatch, tf_config: str, message: str) -> None:
    """These used to end in an AttributeError, TypeError or TensorFlow's ValueError traceback."""
    from quickdraw_cnn.train import TrainError, cluster_task

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(TrainError, match=message):
        cluster_task()
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": "1"}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))  # TensorFlow reads a string index as a number
    assert (cluster_task().index, cluster_task().num_workers) == (1, 2)


def test_figures_of_many_classes_remove_an_earlier_confusion_matrix(tmp_path: Path) -> None:
    """Above 40 classes there is no full matrix: a 3-class run's one must not stay beside the new figures."""
    from quickdraw_cnn import report

    names = [f"class {i}" for i in range(45)]
    y = np.arange(90) % 45
    evaluation = report.Evaluation(
        y, y, np.ones(90, bool), 0.1, [(np.zeros((28, 28), np.uint8), 0, y[:5], np.ones(5) / 5)]
    )
    (tmp_path / "confusion_matrix.png").write_bytes(b"an earlier run's")
    written = report.write_figures(
        tmp_path,
        names,
        evaluation,
        {"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "top5_accuracy": [0.8, 0.9]},
        {"most_confused": []},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_data_run_resuming_with_other_split_options_is_refused_before_the_split_is_remade(
    split_dir: Path, tmp_path: Path
) -> None:
    """The split was remade first, and the refusal then named only the split, never --max-per-class."""
    from quickdraw_cnn.train import Task, prepare_work_dir, unlock_work_dirs

    data = tmp_path / "data"
    shutil.copytree(split_dir.parent / "data", data)
    split = tmp_path / "split"
    write_split(data, split, max_per_class=200, seed=0)
    before = (split / "split.json").read_bytes()
    config = _quick_config(split, tmp_path, work_dir=None, data_dir=data, batch_size=8)
    prepare_work_dir(config, Split.load(split), Task())  # as a run killed in its first epoch left it
    unlock_work_dirs()
    args = ["--data", str(data), "--split", str(split), "--out", str(tmp_path / "models"), "--batch-size", "8"]
    run = _cli(*args, "--max-per-class", "100", "--epochs", "2", "--max-steps-per-epoch", "2", "--quiet")
    assert run.returncode == 1
    assert "made with --max-per-class 200 (now 100); rerun with the same options or pass --fresh" in run.stderr
    assert (split / "split.json").read_bytes() == before
    shutil.copy(data / "circle.npy", data / "my_robot.npy")  # the same options, but a class more
    run = _cli(*args, "--max-per-class", "200", "--epochs", "2", "--max-steps-per-epoch", "2", "--quiet")
    assert run.returncode == 1 and "other drawings in --data" in run.stderr, run.stderr
    assert (split / "split.json").read_bytes() == before


def test_work_dir_holding_other_files_is_never_deleted(split_dir: Path, tmp_path: Path) -> None:
    """The work folder is deleted whole after a run (and for --fresh): a mistaken --work-dir is refused."""
    from quickdraw_cnn.train import Task, TrainError, prepare_work_dir

    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    for fresh in (False, True):
        with pytest.raises(TrainError, match="holds thesis.txt"):
            prepare_work_dir(
                _quick_config(split_dir, tmp_path, work_dir=mine, fresh=fresh), Split.load(split_dir), Task()
            )
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_out_and_work_dir_that_hold_what_the_run_uses_are_refused(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quickdraw_cnn.train import TrainError, train

    monkeypatch.chdir(tmp_path)
    data = split_dir.parent / "data"
    for paths, message in [
        ({"out_dir": Path(".")}, "--out . is or holds the current folder"),
        ({"out_dir": tmp_path.parent}, "is or holds the current folder"),
        ({"out_dir": split_dir}, "is or holds the split"),
        ({"out_dir": split_dir.parent}, "is or holds the split"),
        ({"out_dir": data}, "is or holds the data folder"),
        ({"work_dir": Path(".")}, "is or holds the current folder, and is deleted after the run"),
        ({"work_dir": tmp_path / "m"}, "must not hold one another"),
        ({"work_dir": tmp_path / "m" / "w"}, "must not hold one another"),
    ]:
        config = _quick_config(split_dir, tmp_path, **{"out_dir": tmp_path / "m", **paths})
        with pytest.raises(TrainError, match=message):
            train(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere
    assert sorted(p.name for p in split_dir.iterdir()) == ["split.json", "test.npy", "train.npy", "val.npy"]


def test_link_tree_skips_the_folder_being_built(tmp_path: Path) -> None:
    """`--out .`: the new folder is built inside the folder whose other files it keeps; never copy it."""
    from quickdraw_cnn.export import _link_or_copy_tree

    src = tmp_path / "out"
    (src / "notes").mkdir(parents=True)
    (src / "notes" / "a.txt").write_text("a")
    new = src / ".out.tmp-1"
    new.mkdir()
    for child in src.iterdir():
        if child.name != "model.h5":
            _link_or_copy_tree(child, new / child.name, skip=new)
    assert sorted(str(p.relative_to(new)) for p in new.rglob("*")) == ["notes", "notes/a.txt"]


@pytest.mark.parametrize("problem", ["no test part", "one class"])
def test_unusable_split_is_refused_before_training(problem: str, tmp_path: Path) -> None:
    from quickdraw_cnn.train import TrainError, train

    if problem == "no test part":
        write_synthetic(tmp_path / "data", categories=["circle", "square"], per_class=60)
        write_split(tmp_path / "data", tmp_path / "split", test_fraction=0)
        message = "no test drawings"
    else:
        write_synthetic(tmp_path / "data", categories=["circle"], per_class=60)
        write_split(tmp_path / "data", tmp_path / "split")
        message = "the split has 1 class; a classifier needs at least 2"
    with pytest.raises(TrainError, match=message):
        train(_quick_config(tmp_path / "split", tmp_path, batch_size=8))
    assert not any((tmp_path / name).exists() for name in ("models", "shots", "work"))


def test_screenshots_folder_is_checked_before_training(split_dir: Path, tmp_path: Path) -> None:
    from quickdraw_cnn.train import TrainError, train

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    targets = [(blocker, "--screenshots .*a_file: exists and is not a folder"), (blocker / "shots", "cannot write")]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        targets.append((locked / "shots", "--screenshots .*: cannot write in"))
    for shots, message in targets:
        with pytest.raises(TrainError, match=message):
            train(_quick_config(split_dir, tmp_path, screenshots_dir=shots))
    assert not (tmp_path / "models").exists() and not (tmp_path / "work").exists()


def test_the_folder_the_export_swaps_in_is_checked_before_training(tmp_path: Path, monkeypatch) -> None:
    """The export builds the new model folder beside --out and swaps them: a writable --out in a folder
    that is not trained to the end and only then failed (root writes anywhere, so the refusal is simulated)."""
    import tempfile

    from quickdraw_cnn import train as tr

    parent = tmp_path / "deploy"
    (parent / "models").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(parent / "models")
    real = tempfile.NamedTemporaryFile

    def refuse_parent(*args, dir=None, **kw):
        if Path(dir) == parent:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse_parent)
    for out in (parent / "models", tmp_path / "link"):
        with pytest.raises(tr.TrainError, match=f"^--out {out}: cannot write in {parent} \\(Permission denied\\)$"):
            tr.check_writable(out)
    tr.check_writable(tmp_path / "elsewhere" / "models")


def test_a_diverging_run_stops_at_its_first_nan_epoch(split_dir: Path, tmp_path: Path) -> None:
    """NaN weights trained on to the end, and the export then blamed model.json+model.h5."""
    from quickdraw_cnn.train import HISTORY_FILE, TrainError, train

    config = _quick_config(split_dir, tmp_path, learning_rate=1e6, epochs=3, max_steps_per_epoch=10)
    with pytest.raises(TrainError, match=r"^training diverged in epoch 1 \(loss nan\); run again with a lower"):
        train(config)
    assert not (tmp_path / "models").exists()
    history = tmp_path / "work" / HISTORY_FILE
    assert not history.exists() or "nan" not in history.read_text()  # nothing kept the diverged epoch


class InterruptAfter(Exception):
    pass


@pytest.fixture(scope="module")
def finished_work(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of a run killed after its last epoch, before evaluating and exporting."""
    import keras

    from quickdraw_cnn.train import train

    class KillAtTheEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise InterruptAfter()

    base = tmp_path_factory.mktemp("killed")
    with pytest.raises(InterruptAfter):
        train(_quick_config(split_dir, base), callbacks=[KillAtTheEnd()])
    assert json.loads((base / "work" / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    return base / "work"


def test_rerun_of_a_finished_run_only_evaluates_and_exports(
    finished_work: Path, split_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    from quickdraw_cnn.train import train

    shutil.copytree(finished_work, tmp_path / "work")
    metrics = train(_quick_config(split_dir, tmp_path))
    err = capfd.readouterr().err
    assert "training had finished; evaluating and exporting" in err and "resuming from" not in err
    assert metrics["training"]["epochs_run_this_time"] == 0 and metrics["initial_epoch"] == 2
    assert metrics["history"]["epoch"] == [1, 2] and 1 <= metrics["best_epoch"] <= 2
    assert (tmp_path / "models" / "model.h5").is_file() and not (tmp_path / "work").exists()


def test_torn_backup_falls_back_and_late_figure_failure_is_one_line(
    finished_work: Path, split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest backup torn (a crash or a full disk while writing it): resume from the one before."""
    from quickdraw_cnn import report
    from quickdraw_cnn.train import TrainError, train

    work = tmp_path / "work"
    shutil.copytree(finished_work, work)
    os.truncate(work / "backup" / "latest.weights.h5", 1000)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    spare = tmp_path / "spare"
    shutil.copytree(work, spare)
    # Ctrl-C while the figures are drawn: the work folder stays, so the same command finishes the run
    monkeypatch.setattr(report, "write_figures", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(_quick_config(split_dir, tmp_path))
    assert (work / "run.json").is_file()
    shutil.rmtree(work)
    shutil.copytree(spare, work)
    monkeypatch.setattr(report, "write_figures", disk_full)
    with pytest.raises(TrainError, match="--screenshots .*figures not written \\(No space left on device\\)"):
        train(_quick_config(split_dir, tmp_path))
    metrics = json.loads((tmp_path / "models" / "metrics.json").read_text())  # the model is complete
    assert metrics["initial_epoch"] == 1 and metrics["training"]["epochs_run_this_time"] == 1
    assert metrics["history"]["epoch"] == [1, 2]
    assert not work.exists()  # and nothing is left to resume
    # both copies torn: one line suggesting --fresh, not an h5py traceback
    shutil.copytree(finished_work, tmp_path / "work2")
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):
        os.truncate(tmp_path / "work2" / "backup" / name, 1000)
    with pytest.raises(TrainError, match="cannot restore the interrupted run .*; pass --fresh to start over"):
        train(_quick_config(split_dir, tmp_path, work_dir=tmp_path / "work2"))


def test_reports_swap_in_with_the_model_and_stale_folders_go(tmp_path: Path) -> None:
    import keras

    from quickdraw_cnn.export import export_model

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    out = tmp_path / "models"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    (out / "notes.txt").write_text("mine")
    stale = [tmp_path / ".models.tmp-abc", tmp_path / ".models.old-def"]
    for path in stale:
        (path / "m").mkdir(parents=True)
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    active = tmp_path / ".models.tmp-now"  # another export, started after this run did
    active.mkdir()
    texts = {"metrics.json": '{"new": 1}\n', "classification_report.txt": "report\n"}
    export_model(model, ["a", "b"], out, {}, onnx=False, extra_files=texts, stale_before=time.time() - 60)
    assert (out / "metrics.json").read_text() == '{"new": 1}\n'
    assert (out / "classification_report.txt").read_text() == "report\n"
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.h5").is_file()
    assert not any(p.exists() for p in stale) and active.is_dir()


def _damaged_split(split_dir: Path, tmp_path: Path, name: str) -> Path:
    bad = tmp_path / name
    shutil.copytree(split_dir, bad)
    return bad


def test_split_with_inconsistent_names_or_index_is_refused(split_dir: Path, tmp_path: Path) -> None:
    info = json.loads((split_dir / "split.json").read_text())
    extra = _damaged_split(split_dir, tmp_path, "extra")
    (extra / "split.json").write_text(json.dumps({**info, "class_names": [*CLASSES, "phantom"]}))
    missing = _damaged_split(split_dir, tmp_path, "missing")
    (missing / "split.json").write_text(json.dumps({**info, "class_names": CLASSES[:-1]}))
    for bad in (extra, missing):
        with pytest.raises(DatasetError, match="split.json: class_names do not match"):
            Split.load(bad)
    train_pairs = np.load(split_dir / "train.npy")
    used = {f["name"]: f["used"] for f in info["files"]}
    damages = [
        ("label", lambda p: p.__setitem__((0, 0), len(CLASSES)), "train.npy: labels outside 0..4"),
        ("negative", lambda p: p.__setitem__((3, 0), -1), "train.npy: labels outside"),
        ("row", lambda p: p.__setitem__((5, 1), used[CLASSES[p[5, 0]]]), "train.npy: rows beyond"),
        ("negative row", lambda p: p.__setitem__((5, 1), -2), "train.npy: negative rows"),
    ]
    for name, damage, message in damages:
        bad = _damaged_split(split_dir, tmp_path, name)
        pairs = train_pairs.copy()
        damage(pairs)
        np.save(bad / "train.npy", pairs)
        with pytest.raises(DatasetError, match=message):
            Split.load(bad)
    bad = _damaged_split(split_dir, tmp_path, "shape")
    np.save(bad / "val.npy", np.zeros((4, 3), np.int32))
    with pytest.raises(DatasetError, match="val.npy: not an \\(N, 2\\) integer array"):
        Split.load(bad)
    bad = _damaged_split(split_dir, tmp_path, "garbage")  # numpy advised loading it with pickle
    (bad / "val.npy").write_bytes(b"garbage" * 50)
    with pytest.raises(DatasetError, match=f"^{bad / 'val.npy'}: not an index array \\(damaged"):
        Split.load(bad)


def test_a_class_file_missing_or_cut_short_is_named_once(tmp_path: Path) -> None:
    """The file's path came twice for a truncated file, and a raw [Errno 2] for a missing one."""
    write_synthetic(tmp_path / "data", categories=CLASSES[:3], per_class=60, seed=3)
    write_split(tmp_path / "data", tmp_path / "split")
    square = tmp_path / "data" / "square.npy"
    square.write_bytes(square.read_bytes()[:-1000])
    with pytest.raises(DatasetError, match=f"^{square}: truncated \\(.*\\) \\(the split in .* needs it\\)$"):
        Split.load(tmp_path / "split")
    square.unlink()
    with pytest.raises(DatasetError, match=f"^{square}: missing, the file of class 'square' \\(the split in"):
        Split.load(tmp_path / "split")


def test_making_the_split_names_the_split_option(split_dir: Path, tmp_path: Path) -> None:
    """train_cnn.py --data D --split X: refusals name --split, the option the user gave."""
    from quickdraw_cnn.train import make_split_from

    data = (split_dir.parent / "data").resolve()
    with pytest.raises(DatasetError, match=f"^--split {data} would replace the data folder"):
        make_split_from(data, data, None, 0)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match="^--split .*a_file is a file"):
        make_split_from(data, blocker, None, 0)


def test_max_per_class_without_data_is_refused(split_dir: Path, tmp_path: Path) -> None:
    # also where data/ holds class files but no split yet (train_cnn.py would split data/ itself): the
    # same command run again, to resume, would then be refused, so it is refused from the start
    (tmp_path / "data").mkdir()
    shutil.copy(next((split_dir.parent / "data").glob("*.npy")), tmp_path / "data")
    cmd = [sys.executable, str(ROOT / "train_cnn.py"), "--max-per-class", "5"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2 and "--max-per-class: only applies with --data" in run.stderr
    assert not (tmp_path / "data" / "split").exists()
    run = _cli("--split", str(split_dir), "--out", str(tmp_path / "m"), "--max-per-class", "5")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "train_cnn.py: error: argument --max-per-class: only applies with --data (the split is used as it is) "
        "(see --help)"
    )


def test_ctrl_c_while_tensorflow_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, split_dir: Path, tmp_path: Path
) -> None:
    import quickdraw_cnn.predict

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(quickdraw_cnn.predict, "import_tensorflow", interrupted)
    spec = importlib.util.spec_from_file_location("train_cnn_cli", ROOT / "train_cnn.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    try:
        status = cli.main(["--split", str(split_dir), "--out", str(tmp_path / "m")])
    except KeyboardInterrupt:  # uncaught, it would end the whole pytest session
        pytest.fail("KeyboardInterrupt escaped train_cnn.main")
    assert status == 130
    assert capsys.readouterr().err.splitlines() == [
        "train_cnn.py: interrupted while loading TensorFlow; nothing was written"
    ]


def test_a_disk_filling_up_while_training_is_one_line_and_resumable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, split_dir: Path, tmp_path: Path
) -> None:
    """An OSError from a callback writing the work folder escaped as a traceback."""
    import keras

    history = tmp_path / "work" / "history.csv"

    def disk_full(self, epoch, logs=None):
        raise OSError(28, "No space left on device", str(history))

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", disk_full)
    spec = importlib.util.spec_from_file_location("train_cnn_cli", ROOT / "train_cnn.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = ["--split", str(split_dir), "--out", str(tmp_path / "m"), "--work-dir", str(tmp_path / "work")]
    args += ["--epochs", "1", "--max-steps-per-epoch", "2", "--no-onnx", "--quiet"]
    assert cli.main(args) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"train_cnn.py: error: {history}: No space left on device; run the same command again to continue"
    )
    assert not (tmp_path / "m").exists()


def test_a_work_folder_on_a_full_disk_is_refused_before_training(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only --out's disk was checked: a full one under --work-dir crashed h5py after the first epoch."""
    from quickdraw_cnn import train as train_mod

    full_disk = tmp_path / "full"
    full_disk.mkdir()
    real = shutil.disk_usage
    monkeypatch.setattr(
        train_mod.shutil,
        "disk_usage",
        lambda path: (
            real(path)._replace(free=1000) if full_disk in Path(path).parents or Path(path) == full_disk else real(path)
        ),
    )
    config = _quick_config(split_dir, tmp_path, work_dir=full_disk / "work")
    with pytest.raises(train_mod.TrainError, match=f"^--work-dir {full_disk / 'work'}: only 0 MiB free on its disk"):
        train_mod.train(config)
    assert not (tmp_path / "models").exists() and not (full_disk / "work").exists()


def test_no_split_option_trains_on_the_split_get_dataset_wrote_last(tmp_path: Path) -> None:
    """`make demo` splits into data/demo/split; a plain `python train_cnn.py` then said "no split in data/split"."""
    write_synthetic(tmp_path / "data", categories=CLASSES[:3], per_class=120, seed=2)
    for out in ("data/split", "data/demo/split"):  # the second is newer
        run = subprocess.run(
            [sys.executable, str(ROOT / "get_dataset.py"), "--out", out], cwd=tmp_path, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        time.sleep(0.05)  # distinct modification times
    args = ["--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "16", "--no-onnx", "--quiet"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "train_cnn.py"), *args, "--screenshots", "shots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "train_cnn.py: training on data/demo/split, the newest split in data/" in run.stderr.splitlines()
    card = json.loads((tmp_path / "models" / "model_card.json").read_text())
    assert "data/demo/split" in json.dumps(card)


def test_the_model_card_says_where_the_drawings_came_from(tmp_path: Path) -> None:
    """A model of made-up doodles (download_subset.py --synthetic), or of a mix, looked like any other."""
    from quickdraw_cnn.download import record_files
    from quickdraw_cnn.train import data_sources

    write_synthetic(tmp_path / "data", categories=CLASSES[:4], per_class=40, seed=4)
    url = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap"
    record_files(
        tmp_path / "data",
        [
            {"name": "circle", "file": "circle.npy", "source": "synthetic"},
            {"name": "line", "file": "line.npy", "source": f"{url}/line.npy"},
            {"name": "square", "file": "square.npy", "source": f"{url}/square.npy"},
        ],
    )
    write_split(tmp_path / "data", tmp_path / "split")
    assert data_sources(Split.load(tmp_path / "split")) == {"synthetic": 1, url: 2, "unrecorded": 1}
