"""What a training run depends on, importable without TensorFlow (train_cnn.py builds --help from it).

The defaults are the configuration the benchmarks found best on 20 real classes (bench/bench_train.py):
batch 64, AdamW (weight decay 0.2) warming up to 3e-3 then cosine decay, label smoothing 0.1, random
left-right flips and small shifts/scales/rotations instead of dropout, 20 epochs, bfloat16 compute where
the hardware has it, and an exported model that averages each drawing with its mirror image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")
AUGMENTATIONS = ("none", "flip", "affine", "flip+affine")
TEST_TIME_AUGMENTATIONS = ("none", "flip")
MAX_EPOCHS = 100_000  # far beyond any useful run; larger counts overflow TensorFlow's step arithmetic
MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are 32-bit
# Settings that do not change what the weights learn, so a resumed run may differ in them. Every other
# field shapes the training (the schedule is built from epochs x steps) and must match to resume.
NOT_TRAINING_SETTINGS = (
    "split_dir",  # recorded separately, with a fingerprint of its split.json
    "out_dir",
    "screenshots_dir",
    "work_dir",
    "tta",  # applied at export only
    "in_memory_bytes",
    "onnx",
    "fresh",
    "verbose",
    "data_dir",
    "extra_card",
)


@dataclass
class TrainConfig:
    """Everything a run depends on; the defaults are the configuration the benchmarks found best."""

    split_dir: Path = Path("data/split")
    out_dir: Path = Path("models")
    screenshots_dir: Path | None = Path("screenshots")
    work_dir: Path | None = None  # default: hidden sibling of out_dir, `.<out name>-train`
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    weight_decay: float = 0.2  # > 0: AdamW, decoupled decay of conv/dense kernels only; 0: Adam
    augment: str = "flip+affine"  # one of AUGMENTATIONS
    dropout_scale: float = 0.0  # training-time multiple of the Labs 21 dropout rates (0.2..0.5); 1 = theirs
    tta: str = "flip"  # one of TEST_TIME_AUGMENTATIONS: the exported model averages a drawing and its mirror
    patience: int = 4
    precision: str = "auto"  # mixed_bfloat16 where the hardware has bfloat16 (1.5x here, same accuracy), else float32
    strategy: str = "default"
    arch: str = "labs21"
    seed: int = 0
    max_steps_per_epoch: int | None = None
    in_memory_bytes: int = 512 << 20
    onnx: bool = True
    fresh: bool = False
    verbose: str | int = "auto"
    data_dir: Path | None = None  # recorded in the model card when the split was made from it
    extra_card: dict = field(default_factory=dict)

    def resolved_work_dir(self) -> Path:
        if self.work_dir is not None:
            return Path(self.work_dir)
        out = Path(self.out_dir).resolve()
        return out.parent / f".{out.name}-train"

    def training_settings(self) -> dict:
        """The settings that shape the trained weights: an interrupted run resumes only with the same ones."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_TRAINING_SETTINGS}
