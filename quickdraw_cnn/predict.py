"""Say what a drawing is: load a model folder once, then predict images, bytes, arrays or strokes.

    from quickdraw_cnn.predict import Predictor
    predictor = Predictor.load("models/")                 # or backend="onnx" (no TensorFlow needed)
    predictor.predict("drawing.png", top=5)               # [("cat", 0.91), ("dog", 0.03), ...]
    predictor.predict_many([png_bytes, strokes_list])     # one batch

Model folders: this project's (model.json + model.h5 + class_names.txt [+ model.onnx, model.keras,
model_card.json]) and the Labs 21 Keras 2.3.1 files (their model.json is rewritten into a Keras 3 config
and the weights are read from model.h5 by layer name). The input convention (0..255 uint8 for this
project's models, 0..1 floats for Labs 21) comes from model_card.json when it matches the folder, else
from model.json (a Keras 2 file or a model without a Rescaling layer takes 0..1).

TensorFlow is imported only by the "tf" backend: the "onnx" backend needs numpy, Pillow and onnxruntime.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quickdraw_cnn.preprocess import PreprocessError, Source, to_bitmap

BACKENDS = ("tf", "onnx")


class ModelError(RuntimeError):
    """A model folder that is missing, incomplete or inconsistent; str() is one line naming it."""


def display_name(name: str) -> str:
    """Class names as people write them: Labs 21 stored 'alarm_clock', the data set says 'alarm clock'."""
    return name.replace("_", " ").strip()


def read_class_names(model_dir: Path) -> list[str]:
    """class_names.txt in output order; utf-8-sig because editors on Windows add a BOM."""
    path = model_dir / "class_names.txt"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no class_names.txt (not a model folder?)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({_short(exc)})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelError(f"{path}: no class names")
    return [display_name(n) for n in names]


def read_model_json(path: Path) -> dict:
    """model.json as a dict; anything else (binary, not JSON, a JSON list) is a ModelError naming it."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable Keras model.json ({_short(exc)})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: not a Keras model config (a JSON {type(cfg).__name__}, not an object)")
    return cfg


def input_scale(model_dir: Path, class_names: list[str] | None = None, backend: str = "tf") -> float:
    """Factor from 0..255 pixels to what the model expects: 1.0 (this project) or 1/255 (Labs 21).

    model_card.json says so when it describes this folder; a card left over from another model (other
    classes, or next to a Keras 2 model.json it cannot have described) is ignored with a warning, and
    the answer comes from model.json: a Keras 2 file or a model without a Rescaling layer takes 0..1.
    The ONNX backend never reads model.json, and only this project writes model.onnx (0..255, its
    Rescaling inside): a Labs 21 model.json beside it made every ONNX answer wrong, with exit 0.
    """
    uses_json = backend != "onnx"
    card_path = model_dir / "model_card.json"
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            hi = float(card["input"]["range"][1])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{card_path}: unreadable input convention ({_short(exc)})") from None
        names = read_class_names(model_dir) if class_names is None else class_names
        conflict = _card_conflict(card, model_dir, names, uses_json)
        if conflict is None:
            return hi / 255.0 if hi > 0 else 1.0
        source = "model.json" if uses_json else "model.onnx (0..255)"
        print(f"warning: {card_path} ignored: {conflict}; input range taken from {source}", file=sys.stderr)
    json_path = model_dir / "model.json"
    if uses_json and json_path.exists():
        cfg = read_model_json(json_path)
        if _is_keras2(cfg) or '"Rescaling"' not in json.dumps(cfg):
            return 1.0 / 255.0
    return 1.0


def _card_conflict(card: dict, model_dir: Path, names: list[str], uses_json: bool = True) -> str | None:
    """Why the card does not describe this folder (None when it does): the files were replaced after export."""
    json_path = model_dir / "model.json"
    files = card.get("files")
    if uses_json and json_path.is_file() and (not isinstance(files, list) or "model.json" in files):
        try:
            keras2 = _is_keras2(read_model_json(json_path))
        except ModelError:
            keras2 = False  # loading it says what is wrong; the ONNX backend never needs it
        if keras2:  # the Labs 21 files copied over an export: their own class order is theirs
            return "model.json is a Keras 2 file, not the export it describes"
    classes, num = card.get("classes"), card.get("num_classes")
    card_names = [display_name(str(c)) for c in classes] if isinstance(classes, list) else names
    if card_names != names:
        if sorted(card_names) == sorted(names):
            # The card describes these model files (checked above), and an export writes one order for
            # both: class_names.txt was edited, and every prediction would carry another class's name.
            raise ModelError(
                f"{model_dir}: class_names.txt lists the classes of model_card.json in another order; "
                "the labels would be wrong: copy both from the same export"
            )
        if len(card_names) != len(names):
            return f"it describes other classes than class_names.txt ({len(classes)} against {len(names)})"
        i = next(i for i, (a, b) in enumerate(zip(card_names, names)) if a != b)
        return f"it describes other classes than class_names.txt (line {i + 1}: {card_names[i]!r} against {names[i]!r})"
    if isinstance(num, int) and num != len(names):
        return f"it says {num} classes, class_names.txt lists {len(names)}"
    return None


def _is_keras2(cfg: dict) -> bool:
    return str(cfg.get("keras_version", "")).startswith(("2.", "1.")) or "batch_input_shape" in json.dumps(
        cfg.get("config", {})
    )


def _short(exc: BaseException) -> str:
    """An exception as one short line (UnicodeDecodeError and h5py messages run long)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # the path is already in the message
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


# ----------------------------------------------------------------------------------------------- TF path
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IW]\d{4} |E\d{4} .*cuInit|To enable the following)")


def import_tensorflow() -> Any:
    """Import TensorFlow without its start-up chatter on stderr (oneDNN/CUDA notices printed by C++
    before logging is configured, which TF_CPP_MIN_LOG_LEVEL does not silence); other lines are kept."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # Without an NVIDIA device, TensorFlow's only C++ "error" is that CUDA is missing: silence that too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if os.path.exists("/dev/nvidiactl") else "3")
    try:
        saved = os.dup(2)
    except OSError:
        import tensorflow as tf

        return tf
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            import keras  # noqa: F401  (its own import chatter too)
            import tensorflow as tf
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip() and not _TF_NOISE.match(line):
            print(line, file=sys.stderr)
    return tf


def keras2_to_keras3(cfg: dict) -> Any:
    """Rebuild a Keras 2 Sequential model.json in Keras 3 (which rejects the file as is): the input
    shape moves from the first layer's 'batch_input_shape' to a keras.Input, layer configs are
    deserialized one by one, names kept so the weights can be matched by name."""
    import keras

    if cfg.get("class_name") != "Sequential":
        raise ModelError(f"only Keras 2 Sequential models are supported, not {cfg.get('class_name')}")
    conf = cfg["config"]
    layer_cfgs = conf["layers"] if isinstance(conf, dict) else conf  # Keras <= 2.2.4 stored a bare list
    shape = None
    built = []
    for lc in layer_cfgs:
        c = dict(lc["config"])
        if "batch_input_shape" in c:
            shape = c.pop("batch_input_shape")[1:]
        if lc["class_name"] == "InputLayer":
            continue
        c.pop("input_shape", None)
        c.pop("input_dtype", None)
        for key, value in list(c.items()):
            if isinstance(value, dict) and "class_name" in value:
                del c[key]  # initializers/regularizers/constraints: irrelevant once weights are loaded
        layer_cls = getattr(keras.layers, lc["class_name"], None)
        if layer_cls is None:
            raise ModelError(f"Keras 2 layer type {lc['class_name']} is not known to Keras 3")
        built.append(layer_cls.from_config(c))
    if shape is None:
        raise ModelError("Keras 2 model.json has no input shape")
    name = conf.get("name", "keras2_model") if isinstance(conf, dict) else "keras2_model"
    return keras.Sequential([keras.Input(shape=tuple(shape)), *built], name=name)


def load_h5_weights_by_name(model: Any, h5_path: Path) -> None:
    """Read Keras 2 (or legacy Keras 3) HDF5 weights into `model`, layer by layer, by name."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in g:
                raise ModelError(f"{h5_path}: no weights for layer '{layer.name}'")
            grp = g[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in grp.attrs["weight_names"]]
            arrays = [np.asarray(grp[n]) for n in names]
            try:
                layer.set_weights(arrays)
            except ValueError as exc:
                raise ModelError(f"{h5_path}: weights of layer '{layer.name}' do not fit ({exc})") from None


def load_keras_model(model_dir: Path) -> Any:
    """model.json + model.h5 (Keras 3 or Labs 21 Keras 2), else model.keras, else a full model.h5."""
    import_tensorflow()
    import keras

    json_path, h5_path, keras_path = model_dir / "model.json", model_dir / "model.h5", model_dir / "model.keras"
    try:
        if json_path.exists() and h5_path.exists():
            cfg = read_model_json(json_path)
            if _is_keras2(cfg):
                model = keras2_to_keras3(cfg)
                load_h5_weights_by_name(model, h5_path)
            else:
                model = keras.models.model_from_json(json.dumps(cfg))
                if not isinstance(model, keras.Model):  # e.g. '{}' deserializes to a dict
                    raise ModelError(f"{json_path}: not a Keras model config")
                model.load_weights(h5_path)
            return model
        if keras_path.exists():
            return keras.models.load_model(keras_path, compile=False)
        if h5_path.exists():
            return keras.models.load_model(h5_path, compile=False)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise ModelError(f"{model_dir}: cannot load the model ({type(exc).__name__}: {msg})") from None
    raise ModelError(f"{model_dir}: no model.json + model.h5 (or model.keras) in this folder")


class _TFRunner:
    def __init__(self, model: Any) -> None:
        tf = import_tensorflow()

        self.model = model
        self._fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)],
            reduce_retracing=True,
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._fn(x).numpy()


class _ONNXRunner:
    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: cannot load ({' '.join(str(exc).split())[:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(inp.shape)
        self.output_shape = tuple(self.session.get_outputs()[0].shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


# ----------------------------------------------------------------------------------------------- API
@dataclass
class Predictor:
    """A loaded model plus its class names and input convention; reuse it for every request."""

    model_dir: Path
    class_names: list[str]
    scale: float
    backend: str
    runner: Any = field(repr=False)

    @classmethod
    def load(cls, model_dir: str | os.PathLike = "models", backend: str = "tf") -> Predictor:
        """Load once (the expensive part); raises ModelError for a missing or mismatched folder."""
        model_dir = Path(model_dir)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if not model_dir.is_dir():
            raise ModelError(f"{model_dir}: model folder not found")
        names = read_class_names(model_dir)
        scale = input_scale(model_dir, names, backend)
        if backend == "onnx":
            onnx_path = model_dir / "model.onnx"
            if not onnx_path.exists():
                raise ModelError(f"{model_dir}: no model.onnx (export one, or use --backend tf)")
            runner: Any = _ONNXRunner(onnx_path)
            n_out = runner.output_shape[-1]
            in_shape = runner.input_shape[1:]
        else:
            model = load_keras_model(model_dir)
            runner = _TFRunner(model)
            n_out = model.output_shape[-1]
            in_shape = tuple(model.input_shape[1:])
        if tuple(in_shape) != (28, 28, 1):
            raise ModelError(f"{model_dir}: model takes {tuple(in_shape)}, not 28x28x1 drawings")
        if isinstance(n_out, int) and n_out != len(names):
            raise ModelError(f"{model_dir}: model has {n_out} outputs but class_names.txt lists {len(names)} classes")
        probe = np.asarray(runner(np.zeros((1, 28, 28, 1), np.float32)), np.float64)
        if not (np.all(probe >= -1e-6) and abs(float(probe.sum()) - 1.0) < 1e-3):  # logits printed as 18295.5%
            raise ModelError(
                f"{model_dir}: the model's outputs are not probabilities (they sum to {float(probe.sum()):.4g}); "
                "its last layer needs a softmax"
            )
        return cls(model_dir, names, scale, backend, runner)

    def probabilities(self, bitmaps: np.ndarray) -> np.ndarray:
        """Softmax outputs for uint8 (n, 28, 28[, 1]) bitmaps in the data set's convention."""
        x = np.asarray(bitmaps, dtype=np.float32).reshape(-1, 28, 28, 1)
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.asarray(self.runner(x))

    def top_k(self, probs: np.ndarray, top: int = 5) -> list[list[tuple[str, float]]]:
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be a whole number of at least 1, got {top!r}")
        top = min(int(top), len(self.class_names))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        return [[(self.class_names[i], float(p[i])) for i in row] for p, row in zip(probs, order)]

    def predict_bitmaps(self, bitmaps: np.ndarray, top: int = 5) -> list[list[tuple[str, float]]]:
        return self.top_k(self.probabilities(bitmaps), top)

    def predict(self, source: Source, top: int = 5) -> list[tuple[str, float]]:
        """Top classes with probabilities for one drawing (path, bytes, PIL image, array or strokes)."""
        return self.predict_bitmaps(to_bitmap(source)[None], top)[0]

    def predict_many(self, sources: Sequence[Source], top: int = 5) -> list[list[tuple[str, float]]]:
        """Predict many drawings in one batch; a PreprocessError names the bad item's position."""
        if isinstance(sources, (str, bytes, bytearray, os.PathLike)):
            raise TypeError("predict_many takes a list of drawings; predict takes one")
        bitmaps = []
        for i, s in enumerate(sources):
            try:
                bitmaps.append(to_bitmap(s))
            except PreprocessError as exc:  # every kind takes its message alone
                raise type(exc)(f"item {i}: {exc}") from None
        if not bitmaps:
            return []
        return self.predict_bitmaps(np.stack(bitmaps), top)
