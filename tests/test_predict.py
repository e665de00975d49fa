"""Serialization (export.py), prediction (predict.py) and the load_model_predict.py command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from quickdraw_cnn.predict import ModelError, Predictor, input_scale  # noqa: E402
from quickdraw_cnn.preprocess import to_bitmap  # noqa: E402
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


def test_what_a_client_sends_gets_a_preprocess_error_or_an_answer(exported) -> None:
    """A backend catching PreprocessError answered 500 to these (independent review, stop 18)."""
    from quickdraw_cnn.preprocess import BadStrokesError, PreprocessError

    out, _ = exported
    p = Predictor.load(out, backend="onnx")
    strokes = generate_strokes("circle", np.random.default_rng(7))
    assert p.predict(json.dumps({"drawing": strokes})) == p.predict(strokes)  # strokes JSON as text, not a path
    for bad in ("\ud800.png", "a\x00b.png", b"[[[0, " + b"9" * 400 + b", 1], [0, 1, 2]]]"):
        with pytest.raises(PreprocessError):
            p.predict(bad)
    with pytest.raises(BadStrokesError, match="^item 1: stroke 0 has coordinates"):  # was a TypeError
        p.predict_many([strokes, [[[0, 10**400, 1], [0, 1, 2]]]])
    with pytest.raises(PreprocessError, match="^item 1: not a valid file name$"):
        p.predict_many([strokes, "\ud800.png"])
    with pytest.raises(TypeError, match="predict_many takes a list"):  # it read the name's characters
        p.predict_many("a.png")
    for top in (None, 1.5, 0, True):
        with pytest.raises(ValueError, match="top must be a whole number"):
            p.predict(strokes, top=top)


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
    with pytest.raises(ExportError, match="class names repeat \\('a'\\)"):  # a folder that would not load
        export_model(model, ["a", "b", "a"], target, {})
    with pytest.raises(ExportError, match="class name 'my\\\\nrobot' is empty or holds a line break"):
        export_model(model, ["a", "b", "my\nrobot"], target, {})
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


def test_export_through_a_link_keeps_the_link_and_refuses_a_mount_point(exported, tmp_path: Path) -> None:
    """A deployment link (models -> /srv/app/models) used to be replaced by a plain folder, and a mount
    point (a Docker volume) failed only after the whole training run."""
    from quickdraw_cnn.export import ExportError, export_model
    from quickdraw_cnn.files import not_replaceable

    _, model = exported
    (tmp_path / "srv").mkdir()
    link = tmp_path / "models"
    link.symlink_to(tmp_path / "srv")
    export_model(model, CLASSES, link, {"run": 3}, onnx=False)
    assert link.is_symlink() and json.loads((tmp_path / "srv" / "model_card.json").read_text())["run"] == 3
    export_model(model, CLASSES, link, {"run": 4}, onnx=False)  # and again, over the first
    assert link.is_symlink() and json.loads((tmp_path / "srv" / "model_card.json").read_text())["run"] == 4
    assert not_replaceable(tmp_path, "--out") is None
    assert "--out / is a mount point" in not_replaceable(Path("/"), "--out")
    with pytest.raises(ExportError, match="is a mount point, which cannot be replaced whole"):
        export_model(model, CLASSES, Path("/"), {}, onnx=False)


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


def test_a_model_without_softmax_is_refused(tmp_path: Path) -> None:
    """Its logits were printed as probabilities ("square 18295.5%", exit 0)."""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.set_weights([np.full((784, 3), 0.01, np.float32), np.array([5.0, -1.0, 2.0], np.float32)])
    (tmp_path / "model.json").write_text(model.to_json())
    model.save(tmp_path / "model.h5")
    (tmp_path / "class_names.txt").write_text("circle\nline\nsquare\n")
    with pytest.raises(ModelError, match="outputs are not probabilities .*; its last layer needs a softmax$"):
        Predictor.load(tmp_path)


def _as_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


# case: (file broken, how, whether model_card.json stays: without it the input range comes from model.json)
BROKEN = {
    "names-binary": ("class_names.txt", lambda p: p.write_bytes(bytes(range(128, 256))), True),
    "names-folder": ("class_names.txt", _as_folder, True),
    "card-folder": ("model_card.json", _as_folder, True),
    "json-not-json": ("model.json", lambda p: p.write_text("{not json"), False),
    "json-binary": ("model.json", lambda p: p.write_bytes(bytes(range(128, 256))), False),
    "json-list": ("model.json", lambda p: p.write_text("[1,2]"), False),
    "json-empty": ("model.json", lambda p: p.write_text("{}"), False),  # a dict, but no model
}


def broken_copy(out: Path, tmp_path: Path, case: str) -> tuple[Path, Path]:
    name, breaks, keep_card = BROKEN[case]
    folder = tmp_path / "broken"
    shutil.copytree(out, folder)
    if not keep_card:
        (folder / "model_card.json").unlink()
    breaks(folder / name)
    return folder, folder / name


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_cli_broken_model_file_is_one_line_exit_2(exported, tmp_path: Path, case: str) -> None:
    """A broken file the ONNX backend reads is one line, exit 2; model.json it never reads (a55f1f5)."""
    folder, bad = broken_copy(exported[0], tmp_path, case)
    drawing = tmp_path / "tri.json"
    drawing.write_text(json.dumps(generate_strokes("triangle", np.random.default_rng(0))))
    res = run_cli(str(drawing), "--model-dir", str(folder), "--backend", "onnx")
    if bad.name == "model.json":
        assert res.returncode == 0 and res.stderr == "" and res.stdout.splitlines()[1].startswith("  1. triangle")
        return
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {bad}: ") and res.stderr.count("\n") == 1, res.stderr


@pytest.mark.parametrize("keep_card", [True, False])
@pytest.mark.parametrize("case", ["json-not-json", "json-binary", "json-list", "json-empty"])
def test_tf_backend_broken_model_json_is_a_model_error(exported, tmp_path: Path, case: str, keep_card: bool) -> None:
    folder, bad = broken_copy(exported[0], tmp_path, case)
    if keep_card:
        shutil.copy(exported[0] / "model_card.json", folder)
    with pytest.raises(ModelError, match=rf"^{re.escape(str(bad))}: not a") as err:
        Predictor.load(folder, backend="tf")
    assert "\n" not in str(err.value)


def test_leftover_model_card_is_ignored_when_it_does_not_match(exported, tmp_path: Path, capsys) -> None:
    """A card left next to other model files must not set their input range (0..255 vs Labs 21's 0..1)."""
    folder = tmp_path / "m"
    shutil.copytree(exported[0], folder)
    assert input_scale(folder) == 1.0 and capsys.readouterr().err == ""  # the card matches: trusted
    keras3_json = (folder / "model.json").read_text()
    keras2 = {"class_name": "Sequential", "keras_version": "2.3.1", "config": {"name": "s", "layers": []}}
    (folder / "model.json").write_text(json.dumps(keras2))
    assert input_scale(folder) == pytest.approx(1 / 255)
    err = capsys.readouterr().err
    assert err == (
        f"warning: {folder / 'model_card.json'} ignored: model.json is a Keras 2 file, not the export it"
        " describes; input range taken from model.json\n"
    )
    (folder / "model.json").write_text(keras3_json)
    (folder / "class_names.txt").write_text("a\nb\nc\nd\n")
    assert input_scale(folder) == 1.0  # this project's model.json (Rescaling inside): 0..255 anyway
    assert "ignored: it describes other classes than class_names.txt (3 against 4);" in capsys.readouterr().err
    (folder / "class_names.txt").write_text("circle\nsqaure\ntriangle\n")  # "(3 against 3)" said nothing
    assert input_scale(folder) == 1.0
    assert "other classes than class_names.txt (line 2: 'square' against 'sqaure');" in capsys.readouterr().err


def test_class_names_reordered_against_the_card_are_refused(exported, tmp_path: Path) -> None:
    """Same classes in another order: every label would be another class's name (it used to exit 0)."""
    folder = tmp_path / "m"
    shutil.copytree(exported[0], folder)
    names = (folder / "class_names.txt").read_text().split()
    (folder / "class_names.txt").write_text("\n".join(names[1:] + names[:1]) + "\n")
    with pytest.raises(ModelError, match="class_names.txt lists the classes of model_card.json in another order"):
        Predictor.load(folder)


@pytest.mark.skipif(not LABS21.is_dir(), reason="../shared/data/labs21-model not present")
def test_labs21_files_copied_over_a_project_folder_ignore_its_card(exported, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "m"
    shutil.copytree(exported[0], folder)
    for name in ("model.json", "model.h5", "class_names.txt"):
        shutil.copy(LABS21 / name, folder / name)
    card = json.loads((folder / "model_card.json").read_text())
    labs21_names = [n for n in (LABS21 / "class_names.txt").read_text().split("\n") if n]
    for classes in (card["classes"], sorted(labs21_names)):  # another export's; the same 100 in its order
        (folder / "model_card.json").write_text(json.dumps({**card, "classes": classes, "num_classes": len(classes)}))
        p = Predictor.load(folder)  # the same classes in the export's order were refused (exit 2)
        assert p.scale == pytest.approx(1 / 255)
        assert "model_card.json ignored: model.json is a Keras 2 file" in capsys.readouterr().err
    rows = np.load(SHARED / "quickdraw-real" / "bitmaps" / "cat.npy", mmap_mode="r")[:200]
    probs = p.probabilities(np.asarray(rows).reshape(-1, 28, 28))
    assert (probs.argmax(1) == p.class_names.index("cat")).mean() > 0.8


def test_onnx_never_takes_its_input_range_from_a_model_json(exported, tmp_path: Path, capsys) -> None:
    """A Keras 2 model.json copied beside this project's model.onnx set the ONNX input to 0..1: every
    answer wrong, exit 0."""
    out, _ = exported
    want = Predictor.load(out, backend="onnx")
    star = want.probabilities(to_bitmap(ROOT / "samples" / "star_canvas.png")[None])
    keras2 = {"class_name": "Sequential", "keras_version": "2.3.1", "config": {"name": "s", "layers": []}}
    for card in (True, False):
        folder = tmp_path / f"card_{card}"
        shutil.copytree(out, folder)
        (folder / "model.json").write_text(json.dumps(keras2))
        if not card:
            (folder / "model_card.json").unlink()
        p = Predictor.load(folder, backend="onnx")
        assert p.scale == 1.0 and capsys.readouterr().err == ""
        np.testing.assert_allclose(p.probabilities(to_bitmap(ROOT / "samples" / "star_canvas.png")[None]), star)


def test_class_names_with_a_bom(exported, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "m"
    shutil.copytree(exported[0], folder)
    (folder / "class_names.txt").write_bytes(b"\xef\xbb\xbf" + "\n".join(CLASSES).encode())
    p = Predictor.load(folder, backend="onnx")
    assert p.class_names == CLASSES and capsys.readouterr().err == ""  # and the card still matches


@pytest.mark.parametrize("where", ["file", "file/sub", "/proc"])  # /proc: a folder nobody can write in
def test_cli_save_preprocessed_not_a_folder(exported, tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("mine")
    drawing = tmp_path / "tri.json"
    drawing.write_text(json.dumps(generate_strokes("triangle", np.random.default_rng(0))))
    target = tmp_path / where
    res = run_cli(str(drawing), "--model-dir", str(exported[0]), "--backend", "onnx", "--save-preprocessed", target)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: --save-preprocessed {target}: ") and res.stderr.count("\n") == 1
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.slow
def test_package_builds_as_a_wheel(tmp_path: Path) -> None:
    """pyproject names the package: setuptools' flat-layout discovery refuses the top-level scripts."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # the repository's layout as discovery sees it: its .py files, one level deep
    folders = [ROOT, *(d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith("."))]
    lists = (ROOT / "quickdraw_cnn" / "lists").iterdir()
    for path in [ROOT / "pyproject.toml", *(f for d in folders for f in d.glob("*.py")), *lists]:
        (src / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, src / path.relative_to(ROOT))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    res = subprocess.run([*cmd, "-w", str(tmp_path / "wheel"), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("quickdraw_cnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "quickdraw_cnn/predict.py" in names
    assert {n.split("/")[0] for n in names} == {"quickdraw_cnn", wheel.name.split("-py")[0] + ".dist-info"}
    zipfile.ZipFile(wheel).extractall(tmp_path / "installed")  # the category lists travel with it
    code = "from quickdraw_cnn import categories as c; print(len(c.all_categories()), len(c.manifest()))"
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "installed")},
        capture_output=True,
        text=True,
    )
    assert res.stdout.split() == ["345", "345"], res.stderr[-2000:]


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


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "load_model_predict.py"), *map(str, args)], cwd=ROOT, capture_output=True, text=True
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


def test_cli_stdin_long_names_and_a_full_disk(exported, tmp_path: Path) -> None:
    """A 251-character name used to abort the batch under --save-preprocessed; `-` reads stdin; output
    into a full disk is one line, not a traceback."""
    out, _ = exported
    rng = np.random.default_rng(4)
    png = canvas_png(generate_strokes("square", rng), rng)
    long_name = tmp_path / ("a" + "\u00e9" * 104 + ".png")  # 213 bytes: cut to 200, mid-character
    long_name.write_bytes(png)
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.png")  # not UTF-8: JSON must still be strict UTF-8
    latin1.write_bytes(png)
    seen = tmp_path / "seen"
    cmd = [sys.executable, str(ROOT / "load_model_predict.py"), "-", str(long_name), "", "--model-dir", str(out)]
    res = subprocess.run([*cmd[:2], str(latin1), *cmd[5:], "--backend", "onnx", "--json"], capture_output=True)
    assert json.loads(res.stdout)[0]["file"].encode("utf-8").endswith("caf\ufffd.png".encode())
    res = subprocess.run(
        [*cmd, "--backend", "onnx", "--json", "--save-preprocessed", str(seen)], input=png, capture_output=True
    )
    results = json.loads(res.stdout)
    assert res.returncode == 1 and res.stderr.decode() == "'': empty file name\n"
    assert results[0]["predictions"] == results[1]["predictions"]  # the same drawing, from stdin and a file
    assert results[2] == {"file": "", "error": "empty file name"}
    assert len(list(seen.iterdir())) == 2  # the long name saved under a shorter one
    assert sorted(os.fsencode(p.name).decode("utf-8") for p in seen.iterdir())[1] == "stdin.png"
    res = subprocess.run([*cmd[:2], str(long_name), *cmd[5:], "--save-preprocessed", str(seen)], capture_output=True)
    assert res.returncode == 0 and res.stdout.decode("utf-8").count("\u00e9") == 104 + 99  # printed whole
    closed = subprocess.run([*cmd[:3], *cmd[5:]], capture_output=True, preexec_fn=lambda: os.close(0))
    assert closed.returncode == 1 and closed.stderr.decode() == "-: stdin is closed\n"
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            res = subprocess.run(
                [*cmd[:3], *cmd[5:], "--backend", "onnx"], input=png, stdout=full, stderr=subprocess.PIPE
            )
        assert (
            res.returncode == 1
            and res.stderr.decode() == "error: cannot write the predictions (No space left on device)\n"
        )


def test_cli_reads_a_data_url_argument_and_names_it_short(exported, tmp_path: Path) -> None:
    import base64

    out, _ = exported
    rng = np.random.default_rng(5)
    png = canvas_png(generate_strokes("square", rng), rng)
    (tmp_path / "square.png").write_bytes(png)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    seen = tmp_path / "seen"
    other = "data:image/png;base64," + base64.b64encode(canvas_png(generate_strokes("star", rng), rng)).decode()
    res = run_cli(tmp_path / "square.png", url, "data:image/png;base64,%%", other, "--model-dir", out, "--json",
                  "--backend", "onnx", "--save-preprocessed", seen)  # fmt: skip
    doc = json.loads(res.stdout)
    assert res.returncode == 1
    assert doc[1]["predictions"] == doc[0]["predictions"]
    assert doc[1]["file"].startswith(f"{url[:32]}... ({len(url):,} characters, sha1 ")
    assert doc[3]["file"].startswith(url[:32]) and doc[3]["file"] != doc[1]["file"]  # PNG URLs begin alike
    assert doc[2] == {"file": "data:image/png;base64,%%", "error": "data: URL with broken base64"}
    assert res.stderr == "data:image/png;base64,%%: data: URL with broken base64\n"
    assert sorted(p.name for p in seen.iterdir()) == ["data-url.2.png", "data-url.png", "square.png.png"]
    cmd = [sys.executable, str(ROOT / "load_model_predict.py"), "-", "--model-dir", str(out), "--json"]
    piped = subprocess.run([*cmd, "--backend", "onnx"], input=url, capture_output=True, text=True, cwd=ROOT)
    assert piped.returncode == 0 and json.loads(piped.stdout)[0]["predictions"] == doc[0]["predictions"]


def test_cli_output_into_a_closed_pipe_is_quiet(exported) -> None:
    """`load_model_predict.py ... | head -1`: the reader leaves early; no traceback, exit 141 (SIGPIPE's)."""
    out, _ = exported
    files = [str(p) for p in sorted((ROOT / "samples").iterdir())] * 300  # more output than a pipe holds
    cmd = [sys.executable, str(ROOT / "load_model_predict.py"), *files, "--model-dir", str(out), "--backend", "onnx"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err


def test_cli_with_stdout_closed_or_stdin_twice_is_one_line(exported) -> None:
    """`... >&-` was an AttributeError traceback; `- -` read the pipe's empty rest as "empty file"."""
    out, _ = exported
    star = ROOT / "samples" / "star_canvas.png"
    cmd = f'"{sys.executable}" "{ROOT / "load_model_predict.py"}" "{star}" --model-dir "{out}" --backend onnx >&-'
    closed = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT)
    assert closed.returncode == 2, closed.stderr
    assert closed.stderr.strip() == "error: standard output is closed; nothing to print the predictions to"
    twice = run_cli("-", "-", "--model-dir", out)
    assert twice.returncode == 2 and twice.stderr.strip().splitlines()[-1].startswith(
        "load_model_predict.py: error: - (stdin) can be given once"
    ), twice.stderr


def test_cli_names_a_file_with_a_line_break_on_one_line(exported, tmp_path: Path) -> None:
    """A name holding a line break split its block of output in two."""
    out, _ = exported
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes((ROOT / "samples" / "star_canvas.png").read_bytes())
    res = run_cli(odd, "--model-dir", out, "--backend", "onnx")
    assert res.returncode == 0 and res.stdout.splitlines()[0] == repr(str(odd)), res.stdout
    assert len(res.stdout.splitlines()) == 1 + len(CLASSES)  # the name, then every class (fewer than five)
