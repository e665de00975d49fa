"""Write a trained model into a folder the app team can copy at any moment.

Files (all in `out_dir`): model.json (architecture), model.h5 (full legacy HDF5: readable both by
`model_from_json(...).load_weights` and `load_model`), class_names.txt (output order), model.keras (native),
model.onnx (for the TensorFlow-free backend) and model_card.json (what the model is and what it eats).

Atomicity: everything is written and verified in a hidden sibling folder first; only a complete, checked
model is swapped in. The swap renames the old folder aside, renames the new one in and deletes the old one,
so a reader sees the old complete model, the new complete model or (for microseconds) no folder, never a
mix. Files in `out_dir` that are not model files are hard-linked (or copied) into the new folder, so
`models/` may hold other things; reports passed as `extra_files` are swapped in with the model. A crash
between the two renames leaves the previous model in `.<name>.old-*/m`, which the next export (and
`recover_interrupted`) moves back; `remove_stale` deletes what killed exports left beside it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import shutil
import tempfile
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path

import keras
import numpy as np

from .files import not_replaceable, recover_interrupted, swap_dir, sync_tree

__all__ = ["ExportError", "export_model", "recover_interrupted", "remove_stale"]

MODEL_FILES = (
    "model.json",
    "model.h5",
    "class_names.txt",
    "model.keras",
    "model.onnx",
    "model_card.json",
)
INPUT_CONVENTION = {
    "dtype": "uint8",
    "range": [0, 255],
    "shape": [28, 28, 1],
    "polarity": "light strokes on black",
}


class ExportError(RuntimeError):
    """The model could not be written or did not read back identically."""


def library_versions() -> dict[str, str]:
    """Versions of what wrote (and what can read) the files, for the model card."""
    out = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "numpy", "h5py", "onnx", "tf2onnx", "onnxruntime", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _link_or_copy_tree(src: Path, dst: Path, skip: Path | None = None) -> None:
    """Mirror `src` into `dst` cheaply (hard links; copies where links are impossible).

    `skip` (the new folder being built) is never mirrored: were it inside `src`, the copy would
    recurse into itself until names grew too long."""
    if skip is not None and src.exists() and os.path.samefile(src, skip):
        return
    if src.is_dir() and not src.is_symlink():
        dst.mkdir()
        for child in src.iterdir():
            _link_or_copy_tree(child, dst / child.name, skip)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _ensure_built(model: keras.Model) -> None:
    """Keras' ONNX export refuses a model that was never called; calling it once costs nothing."""
    shape = tuple(model.input_shape[1:])
    model(np.zeros((1, *shape), dtype="float32"), training=False)


def _write(model: keras.Model, class_names: list[str], tmp: Path, card: dict, onnx: bool) -> dict:
    _ensure_built(model)
    (tmp / "model.json").write_text(model.to_json(), encoding="utf-8")
    absl_log = logging.getLogger("absl")  # silence "HDF5 is legacy": writing it is deliberate here
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        model.save(tmp / "model.h5")  # legacy HDF5, full model (Keras 3 refuses save_weights to '*.h5')
    finally:
        absl_log.setLevel(level)
    model.save(tmp / "model.keras")
    (tmp / "class_names.txt").write_text("".join(f"{c}\n" for c in class_names), encoding="utf-8")
    files = ["model.json", "model.h5", "class_names.txt", "model.keras"]
    if onnx:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.export(str(tmp / "model.onnx"), format="onnx", verbose=False)
            files.append("model.onnx")
        except ImportError as exc:  # tf2onnx/onnx missing: the TF files are still worth writing
            warnings.warn(f"model.onnx not written ({exc}); pip install tf2onnx onnx", stacklevel=3)
    full = dict(card)
    full.update(
        {
            "classes": list(class_names),
            "num_classes": len(class_names),
            "input": dict(INPUT_CONVENTION),
            "output": "softmax probabilities in class_names.txt order",
            "feed": "float32 tensor (n, 28, 28, 1) holding the 0..255 pixel values (Keras and ONNX alike)",
            "files": files + ["model_card.json"],
            "library_versions": library_versions(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    (tmp / "model_card.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return full


def _verify(model: keras.Model, tmp: Path, files: list[str]) -> None:
    """Both reload paths (and ONNX) must reproduce the live model's predictions before the swap."""
    rng = np.random.default_rng(0)
    shape = tuple(model.input_shape[1:])
    x = rng.integers(0, 256, size=(4, *shape)).astype("float32")
    want = np.asarray(model(x, training=False))
    a = keras.models.model_from_json((tmp / "model.json").read_text(encoding="utf-8"))
    a.load_weights(tmp / "model.h5")
    b = keras.models.load_model(tmp / "model.h5", compile=False)
    for name, got in (("model.json+model.h5", a(x, training=False)), ("model.h5", b(x, training=False))):
        if not np.allclose(np.asarray(got), want, atol=1e-6):
            raise ExportError(f"{name} does not reproduce the model's predictions")
    if "model.onnx" in files:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        if not np.allclose(got, want, atol=1e-5):
            raise ExportError("model.onnx does not reproduce the model's predictions within 1e-5")


def remove_stale(out_dir: Path, before: float) -> None:
    """Delete `.<name>.tmp-*` / `.<name>.old-*` folders that killed exports left beside `out_dir`, if
    older than `before` (so a concurrent export's folder is left alone). Run after `recover_interrupted`."""
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*"):
        for path in out_dir.parent.glob(pattern):
            try:
                if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < before:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def export_model(
    model: keras.Model,
    class_names: list[str],
    out_dir: str | os.PathLike,
    card: dict,
    *,
    onnx: bool = True,
    verify: bool = True,
    extra_files: dict[str, str] | None = None,
    stale_before: float | None = None,
) -> None:
    """Write the model's files into `out_dir` atomically (see module docstring); raises ExportError.

    `extra_files` (name -> text, e.g. the reports) are swapped in with the model, so readers never see
    a new model beside old reports; `stale_before` (a time.time()) removes leftovers of killed exports.
    """
    extra_files = dict(extra_files or {})
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # a deployment link (models -> /srv/app/models): replace what it points at
        out_dir = out_dir.resolve()
    problem = not_replaceable(out_dir, "--out")
    if problem:
        raise ExportError(problem)
    class_names = [str(c) for c in class_names]
    repeated = sorted(c for c, n in Counter(class_names).items() if n > 1)
    if repeated:
        raise ExportError(f"class names repeat ({', '.join(map(repr, repeated))}): the labels would be ambiguous")
    unprintable = [c for c in class_names if not c.isprintable() or not c.strip()]
    if unprintable:  # class_names.txt holds one per line
        raise ExportError(f"class name {unprintable[0]!r} is empty or holds a line break or control character")
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ExportError(f"model has {n_out} outputs but {len(class_names)} class names were given")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted(out_dir)
        if stale_before is not None:
            remove_stale(out_dir, stale_before)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot write here ({exc.strerror or exc})") from exc
    try:
        full = _write(model, class_names, tmp, card, onnx)
        if verify:
            _verify(model, tmp, full["files"])
        for name, text in extra_files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if out_dir.exists():
            for child in out_dir.iterdir():  # keep whatever else lives in out_dir
                if child.name not in MODEL_FILES and child.name not in extra_files:
                    _link_or_copy_tree(child, tmp / child.name, skip=tmp)
            os.chmod(tmp, os.stat(out_dir).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o755)
        sync_tree(tmp)  # on the disk before the app team's folder is swapped for it
        swap_dir(tmp, out_dir)
    except OSError as exc:
        raise ExportError(f"{out_dir}: export failed ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
