"""Reports of a trained model: per-class scores, curves, confusions, example guesses, metrics.json.

Pure numpy / scikit-learn / matplotlib (Agg backend, no display, no TensorFlow), so reports can be
redrawn from saved figures. Views are chosen to stay readable at 345 classes: the most confused pairs
rather than a 345x345 matrix (the full matrix is drawn too when there are few classes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix  # noqa: E402

FULL_MATRIX_MAX_CLASSES = 40


@dataclass
class Evaluation:
    """Predictions over a part: labels, top-1 guesses, top-5 hits, mean loss, a few worked examples."""

    y_true: np.ndarray
    y_pred: np.ndarray
    top5_hit: np.ndarray
    loss: float
    # (image 28x28 uint8/float, true label, top-k labels, top-k probabilities)
    examples: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def top1(self) -> float:
        return float(np.mean(self.y_true == self.y_pred)) if len(self.y_true) else math.nan

    @property
    def top5(self) -> float:
        return float(np.mean(self.top5_hit)) if len(self.y_true) else math.nan


def confused_pairs(cm: np.ndarray, class_names: list[str], top: int = 20) -> list[dict]:
    """The `top` largest off-diagonal cells: (true, predicted, count, share of the true class)."""
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:top]
    support = cm.sum(axis=1)
    out = []
    for i, j in zip(*np.unravel_index(flat, off.shape)):
        if off[i, j] == 0:
            break
        out.append(
            {
                "true": class_names[i],
                "predicted": class_names[j],
                "count": int(off[i, j]),
                "share_of_true": float(off[i, j] / support[i]) if support[i] else 0.0,
            }
        )
    return out


def summarize(evaluation: Evaluation, class_names: list[str], history: dict[str, list[float]], timing: dict) -> dict:
    """Every figure in one JSON-able dict: test top-1/top-5/loss, per class, confusions, history, timing."""
    labels = np.arange(len(class_names))
    cm = confusion_matrix(evaluation.y_true, evaluation.y_pred, labels=labels)
    rep = classification_report(
        evaluation.y_true,
        evaluation.y_pred,
        labels=labels,
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
    per_class = {}
    for i, name in enumerate(class_names):
        mask = evaluation.y_true == i
        per_class[name] = {
            "precision": rep[name]["precision"],
            "recall": rep[name]["recall"],
            "f1": rep[name]["f1-score"],
            "support": int(rep[name]["support"]),
            "top5_accuracy": float(evaluation.top5_hit[mask].mean()) if mask.any() else None,
        }
    return {
        "test": {
            "top1_accuracy": evaluation.top1,
            "top5_accuracy": evaluation.top5,
            "loss": evaluation.loss,
            "drawings": int(len(evaluation.y_true)),
            "macro_f1": rep["macro avg"]["f1-score"],
            "weighted_f1": rep["weighted avg"]["f1-score"],
        },
        "per_class": per_class,
        "most_confused": confused_pairs(cm, class_names),
        "history": history,
        "timing": timing,
        "num_classes": len(class_names),
    }


def plot_training_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss, top-1 and top-5 per epoch, train and validation side by side."""
    epochs = [int(e) for e in history.get("epoch", [])]  # numbered from 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(
        axes, ("loss", "accuracy", "top5_accuracy"), ("loss", "top-1 accuracy", "top-5 accuracy")
    ):
        for prefix, label, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            values = history.get(prefix + key)
            if values:
                ax.plot(epochs, values, style, label=label, markersize=4)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_confused_pairs(pairs: list[dict], path: Path) -> None:
    """Horizontal bars of the most confused (true -> predicted) pairs, largest on top."""
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(pairs), 3) + 1.2))
    if pairs:
        names = [f"{p['true']} \u2192 {p['predicted']}" for p in pairs][::-1]
        counts = [p["count"] for p in pairs][::-1]
        shares = [p["share_of_true"] for p in pairs][::-1]
        bars = ax.barh(names, counts, color="tab:red")
        for bar, share in zip(bars, shares):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {share:.1%}", va="center")
        ax.set_xlim(0, max(counts) * 1.18)
        ax.set_xlabel("test drawings of the true class predicted as the other (label: share of the class)")
    else:
        ax.text(0.5, 0.5, "no confusions on the test split", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"Most confused pairs (top {len(pairs)})")
    fig.tight_layout()
    _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray, class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (only drawn for few classes, where labels stay legible)."""
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.32 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    _save(fig, path)


def plot_predictions(examples: list, class_names: list[str], path: Path) -> None:
    """A few test drawings with their top-5 guesses (green: the true class)."""
    n = len(examples)
    cols = min(4, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols * 2, figsize=(cols * 5.2, rows * 2.3), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (image, true, top, probs) in enumerate(examples):
        r, c = divmod(k, cols)
        ax_img, ax_bar = axes[r, 2 * c], axes[r, 2 * c + 1]
        ax_img.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255)
        ax_img.set_title(f"true: {class_names[true]}", fontsize=9)
        ax_bar.set_axis_on()
        names = [class_names[int(t)] for t in top][::-1]
        colors = ["tab:green" if int(t) == true else "tab:gray" for t in top][::-1]
        ax_bar.barh(names, np.asarray(probs)[::-1], color=colors)
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(labelsize=8)
    fig.suptitle("Test drawings and the model's top-5 guesses")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write the figure whole or not at all (a full disk leaves neither a torn PNG nor a .part file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def report_texts(class_names: list[str], evaluation: Evaluation, metrics: dict) -> dict[str, str]:
    """classification_report.txt and metrics.json as text, so the export can swap them in with the model."""
    labels = np.arange(len(class_names))
    text = classification_report(
        evaluation.y_true, evaluation.y_pred, labels=labels, target_names=class_names, digits=4, zero_division=0
    )
    head = (
        f"test drawings: {len(evaluation.y_true)}   top-1 accuracy: {evaluation.top1:.4f}   "
        f"top-5 accuracy: {evaluation.top5:.4f}   loss: {evaluation.loss:.4f}\n\n"
    )
    clean = _finite(metrics)
    return {
        "classification_report.txt": head + text,
        "metrics.json": json.dumps(clean, indent=1, default=_jsonable, allow_nan=False) + "\n",
    }


def write_figures(
    screenshots_dir: Path,
    class_names: list[str],
    evaluation: Evaluation,
    history: dict[str, list[float]],
    metrics: dict,
) -> list[Path]:
    """The figures (curves, confused pairs, example guesses, small confusion matrix) in `screenshots_dir`."""
    shots = Path(screenshots_dir)
    plot_training_curves(history, shots / "training_curves.png")
    plot_confused_pairs(metrics.get("most_confused", []), shots / "confused_pairs.png")
    plot_predictions(evaluation.examples[:8], class_names, shots / "prediction_result.png")
    written = [shots / "training_curves.png", shots / "confused_pairs.png", shots / "prediction_result.png"]
    if len(class_names) <= FULL_MATRIX_MAX_CLASSES:
        labels = np.arange(len(class_names))
        cm = confusion_matrix(evaluation.y_true, evaluation.y_pred, labels=labels)
        plot_confusion_matrix(cm, class_names, shots / "confusion_matrix.png")
        written.append(shots / "confusion_matrix.png")
    else:  # an earlier, smaller run's matrix would pass for this model's
        (shots / "confusion_matrix.png").unlink(missing_ok=True)
    return written


def _finite(value):
    """NaN/inf -> None, so metrics.json stays strict JSON (other readers reject NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
