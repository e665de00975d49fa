"""Serialization (export.py), prediction (predict.py) and the load_model_predict.py command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from quickdraw_cnn.predict import ModelError, Predictor  # noqa: E402
from quickdraw_cnn.render import prepare_strokes, render_strokes  # noqa: E402
from quickdraw_cnn.synthetic import generate_class, generate_strokes  # noqa: E402
from quickdraw_cnn.upload_sim import canvas_png  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LABS21 = SHARED / "labs21-model"
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    """A tiny model trained a few steps on synthetic shapes, exported once for the whole module."""
    import keras

    from quickdraw_cnn.export import export_model
    from quickdraw_cnn.model import build_cnn

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.concatenate([generate_class(c, 40, rng) for c in CLASSES]).reshape(-1, 28, 28, 1)
    y = np.repeat(np.arange(len(CLASSES)), 40)
    model = build_cnn(len(CLASSES))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, batch_size=30, epochs=2, verbose=0)
    out = tmp_path_factory.mktemp("export") / "models"
    export_model(model, CLASSES, out, {"data": "synthetic test shapes"})
    return out, model


def test_export_writes_every_file_and_card(exported) -> None:
    out, _ = exported
    for name in ("model.json", "model.h5", "class_names.txt", "model.keras", "model.onnx", "model_card.json"):
        assert (out / name).stat().st_size > 0, name
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"] == "synthetic test shapes"
    assert card["classes"] == CLASSES
    assert card["input"] == {"dtype": "uint8", "range": [0, 255], "shape": [28, 28, 1],
                             "polarity": "light strokes on black"}  # fmt: skip
    assert "tensorflow" in card["library_versions"] and card["date"]
    assert (out / "class_names.txt").read_text().split("\n")[:3] == CLASSES
    assert not list(out.parent.glob(".models.*"))  # no temporary folders left behind


def test_both_reload_paths_and_onnx_reproduce_predictions(exported) -> None:
    import keras

    out, model = exported
    x = np.random.default_rng(1).integers(0, 256, (8, 28, 28, 1)).astype("float32")
    want = np.asarray(model(x, training=False))
    a = keras.models.model_from_json((out / "model.json").read_text())
    a.load_weights(out / "model.h5")
    b = keras.models.load_model(out / "model.h5", compile=False)
    np.testing.assert_array_equal(np.asarray(a(x, training=False)), want)
    np.testing.assert_array_equal(np.asarray(b(x, training=False)), want)
    tf_pred = Predictor.load(out, backend="tf")
    onnx_pred = Predictor.load(out, backend="onnx")
    bitmaps = x[..., 0].astype(np.uint8)
    np.testing.assert_allclose(tf_pred.probabilities(bitmaps), want, atol=1e-6)
    np.testing.assert_allclose(onnx_pred.probabilities(bitmaps), tf_pred.probabilities(bitmaps), atol=1e-5)


def test_predict_api_on_strokes_images_and_batches(exported) -> None:
    out, _ = exported
    p = Predictor.load(out)
    rng = np.random.default_rng(7)
    strokes = generate_strokes("circle", rng)
    top = p.predict(strokes, top=3)
    assert [c for c, _ in top][:3] and {c for c, _ in top} <= set(CLASSES)
    assert abs(sum(prob for _, prob in p.predict(strokes, top=99)) - 1.0) < 1e-4
    many = p.predict_many([strokes, canvas_png(strokes, rng), render_strokes(prepare_strokes(strokes))], top=2)
    assert len(many) == 3 and all(len(m) == 2 for m in many)
    assert many[0] == many[2]  # strokes and their direct rendering are the same input


def test_export_keeps_other_files_and_previous_model_on_failure(exported, tmp_path: Path) -> None:
    from quickdraw_cnn.export import ExportError, export_model, recover_interrupted

    out, model = exported
    target = tmp_path / "models"
    shutil.copytree(out, target)
    (target / "notes").mkdir()
    (target / "notes" / "keep.txt").write_text("mine")
    before = (target / "model.h5").read_bytes()
    with pytest.raises(ExportError, match="3 outputs but 2 class names"):
        export_model(model, ["a", "b"], target, {})
    assert (target / "model.h5").read_bytes() == before
    export_model(model, CLASSES, target, {"run": 2}, onnx=False)
    assert (target / "notes" / "keep.txt").read_text() == "mine"
    assert json.loads((target / "model_card.json").read_text())["run"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".models.")]
    # an export killed between its two renames: the previous model sits aside and comes back
    aside = tmp_path / ".models.old-x"
    aside.mkdir()
    os.rename(target, aside / "m")
    assert recover_interrupted(target) and (target / "model.h5").exists()


def test_missing_and_mismatched_model_folders(exported, tmp_path: Path) -> None:
    out, _ = exported
    with pytest.raises(ModelError, match="not found"):
        Predictor.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="class_names.txt"):
        Predictor.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "class_names.txt").write_text("circle\nsquare\n")
    for backend in ("tf", "onnx"):
        with pytest.raises(ModelError, match="3 outputs but class_names.txt lists 2"):
            Predictor.load(bad, backend=backend)
    (bad / "model.onnx").unlink()
    with pytest.raises(ModelError, match="no model.onnx"):
        Predictor.load(bad, backend="onnx")


@pytest.mark.skipif(not LABS21.is_dir(), reason="../shared/data/labs21-model not present")
def test_labs21_keras2_model_loads_and_recognises_real_drawings() -> None:
    p = Predictor.load(LABS21)
    assert len(p.class_names) == 100 and "alarm clock" in p.class_names  # underscores shown as spaces
    assert p.scale == pytest.approx(1 / 255)  # Keras 2 model: 0..1 input
    rows = np.load(SHARED / "quickdraw-real" / "bitmaps" / "cat.npy", mmap_mode="r")[:200]
    probs = p.probabilities(np.asarray(rows).reshape(-1, 28, 28))
    assert (probs.argmax(1) == p.class_names.index("cat")).mean() > 0.8


def test_onnx_backend_never_imports_tensorflow(exported) -> None:
    out, _ = exported
    code = (
        "import sys; from quickdraw_cnn.predict import Predictor;"
        f"p = Predictor.load({str(out)!r}, backend='onnx');"
        "from quickdraw_cnn.synthetic import generate_strokes; import numpy as np;"
        "print(p.predict(generate_strokes('square', np.random.default_rng(0)))[0][0]);"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = res.stdout.splitlines()
    assert lines[0] in CLASSES and lines[1] == "[]"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "load_model_predict.py"), *args], cwd=ROOT, capture_output=True, text=True
    )


def test_cli_json_and_exit_codes(exported, tmp_path: Path) -> None:
    out, _ = exported
    rng = np.random.default_rng(3)
    good = tmp_path / "square.png"
    good.write_bytes(canvas_png(generate_strokes("square", rng), rng))
    strokes = tmp_path / "tri.json"
    strokes.write_text(json.dumps(generate_strokes("triangle", rng)))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")

    res = run_cli(str(good), str(strokes), "--model-dir", str(out), "--json", "--top", "2", "--backend", "onnx")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [d["file"] for d in doc] == [str(good), str(strokes)]
    assert all(len(d["predictions"]) == 2 and set(d["predictions"][0]) == {"class", "probability"} for d in doc)

    seen = tmp_path / "seen"
    res = run_cli(str(empty), str(good), str(text), "--model-dir", str(out), "--save-preprocessed", str(seen))
    assert res.returncode == 1
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"{empty}:") and errors[1].startswith(f"{text}:")
    assert str(good) in res.stdout and "1." in res.stdout
    assert (seen / "square.png.png").exists()

    res = run_cli(str(good), "--model-dir", str(tmp_path / "missing"), "--json")
    assert res.returncode == 2 and "model folder not found" in res.stderr and res.stdout == ""
