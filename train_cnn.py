"""Train the drawing CNN on the split get_dataset.py wrote, evaluate it, report, and export it.

Reads the split in --split (default: the newest split under data/, else data/split); with --data,
first (re)makes that split from the <class>.npy files in DIR. Trains with AdamW + warm-up/cosine learning
rate, label smoothing and random left-right flips, shifts, scales and rotations, early stopping on
validation loss and the best weights kept; the exported model averages each drawing with its mirror
image. Interrupted? Run the same command again: it continues from the last finished epoch (state in the
work folder); changed training options or a changed split are refused (--fresh starts over).

Writes into --out (default models/), atomically, only at the end: model.json + model.h5 (both
`model_from_json(...).load_weights("model.h5")` and `load_model("model.h5")` work), class_names.txt,
model.keras, model.onnx, model_card.json, plus classification_report.txt and metrics.json (every
figure: test top-1/top-5, per class, per epoch numbered from 1, timing). Figures go to --screenshots.

Multi-worker: start the same command on every machine with --strategy multiworker and each machine's
TF_CONFIG; every worker reads its own shard; the chief (task 0) writes the model and the reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quickdraw_cnn.cli import (
    ArgumentParser,
    at_most,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    share,
)
from quickdraw_cnn.config import (
    AUGMENTATIONS,
    MAX_EPOCHS,
    MAX_SEED,
    PRECISIONS,
    STRATEGIES,
    TEST_TIME_AUGMENTATIONS,
    TrainConfig,
)
from quickdraw_cnn.dataset import DEFAULT_SPLIT, default_split


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()  # the defaults live there, once
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split folder to read (default: the split get_dataset.py wrote last under data/, i.e. the newest "
        "data/**/split.json; data/split when there is none)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="make the split from this folder of <class>.npy files first, writing it into --split "
        "(default: use the existing split; if there is none and data/ holds .npy files, split data/)",
    )
    p.add_argument(
        "--max-per-class",
        type=positive_int,
        default=None,
        help="with --data: use at most N drawings per class (refused without --data: the split is used as it is)",
    )
    p.add_argument("--out", type=Path, default=Path("models"), help="folder for the model files (default: models)")
    p.add_argument(
        "--screenshots", type=Path, default=Path("screenshots"), help="folder for figures (default: screenshots)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for resume state, best checkpoint and history (default: .<out name>-train next to --out; "
        "removed after a successful run)",
    )
    p.add_argument(
        "--epochs",
        type=at_most(positive_int, MAX_EPOCHS),
        default=d.epochs,
        help="maximum epochs (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=d.batch_size,
        help="global batch size, all workers together (default: %(default)s)",
    )
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=d.learning_rate,
        help="peak learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--warmup-epochs",
        type=at_most(non_negative_float, MAX_EPOCHS),
        default=d.warmup_epochs,
        help="linear warm-up before cosine decay (default: %(default)s)",
    )
    p.add_argument(
        "--label-smoothing",
        type=fraction,
        default=d.label_smoothing,
        help="label smoothing in [0, 1), 0 = off (default: %(default)s)",
    )
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=d.weight_decay,
        help="decoupled weight decay of conv/dense kernels (AdamW); 0 = plain Adam (default: %(default)s)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=d.augment,
        help="training-time changes to drawings: flip = mirror half of them left-right, affine = small random "
        "shift/scale/rotation, flip+affine = both, none (default: %(default)s)",
    )
    p.add_argument(
        "--dropout-scale",
        type=share,
        default=d.dropout_scale,
        help="train with the Labs 21 dropout rates (0.2, 0.3, 0.4, 0.5) times this, 0..1; dropout has no "
        "weights and is off at inference, so the exported model is the same (default: %(default)s)",
    )
    p.add_argument(
        "--tta",
        choices=TEST_TIME_AUGMENTATIONS,
        default=d.tta,
        help="test-time augmentation built into the exported model: flip = answer with the mean of the "
        "predictions for the drawing and its mirror image (twice the inference cost), none = the CNN alone "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=non_negative_int,
        default=d.patience,
        help="in the second half of the epochs (the learning rate decayed), stop after N epochs without a "
        "better val loss; the best weights are kept either way; 0 = never stop early (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="mixed_bfloat16: bfloat16 compute, float32 weights (1.5x faster on CPUs with AVX512_BF16, same "
        "accuracy); auto picks it where the hardware has bfloat16 (GPU, AVX512_BF16/AMX CPU), else float32; "
        "the exported model is float32 either way (default: %(default)s)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=d.strategy,
        help="default: one device; mirrored: all local GPUs; multiworker: the cluster in TF_CONFIG",
    )
    p.add_argument("--arch", choices=("labs21",), default="labs21", help="architecture (default: labs21)")
    p.add_argument(
        "--seed",
        type=at_most(non_negative_int, MAX_SEED),
        default=d.seed,
        help=f"random seed for weights, shuffling, augmentation (and, with --data, the split, as get_dataset.py's "
        f"--seed), 0..{MAX_SEED} (default: %(default)s)",
    )
    p.add_argument(
        "--max-steps-per-epoch", type=positive_int, default=None, help="cap steps per epoch (for quick runs)"
    )
    p.add_argument(
        "--in-memory-mb",
        type=positive_int,
        default=d.in_memory_bytes >> 20,
        help="gather a part into memory (uint8) when it is at most this many MB, else stream it (default: %(default)s)",
    )
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip model.onnx (faster export)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard an interrupted run's state instead of resuming (resuming needs the same training "
        "options and split; a mismatch is refused)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="one line per epoch, no progress bars (always so when not a terminal)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = "train_cnn.py"
    data_dir = args.data
    if args.max_per_class is not None and args.data is None:  # also when data/ is split for you: a rerun would not
        parser.error("argument --max-per-class: only applies with --data (the split is used as it is)")
    if args.split is None:  # the split get_dataset.py wrote last; made from data/ if it was not run yet
        args.split = DEFAULT_SPLIT if data_dir is not None else default_split()
        if args.split != DEFAULT_SPLIT:
            print(f"{prog}: training on {args.split}, the newest split in data/", file=sys.stderr)
        elif data_dir is None and not (args.split / "split.json").exists() and any(Path("data").glob("*.npy")):
            data_dir = Path("data")
            print(f"{prog}: no split in {args.split}; making one from {data_dir}/", file=sys.stderr)

    try:
        from quickdraw_cnn.dataset import DatasetError
        from quickdraw_cnn.predict import import_tensorflow

        import_tensorflow()  # before quickdraw_cnn.train, so TensorFlow's C++ start-up chatter is filtered
        from quickdraw_cnn.train import (
            TrainError,
            check_paths,
            check_split_remake,
            claim_work_dir,
            make_split_from,
            train,
        )
    except KeyboardInterrupt:
        print(f"{prog}: interrupted while loading TensorFlow; nothing was written", file=sys.stderr)
        return 130

    try:
        config = TrainConfig(
            split_dir=args.split,
            out_dir=args.out,
            screenshots_dir=args.screenshots,
            work_dir=args.work_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            weight_decay=args.weight_decay,
            augment=args.augment,
            dropout_scale=args.dropout_scale,
            tta=args.tta,
            patience=args.patience,
            precision=args.precision,
            strategy=args.strategy,
            arch=args.arch,
            seed=args.seed,
            max_steps_per_epoch=args.max_steps_per_epoch,
            in_memory_bytes=args.in_memory_mb * 2**20,
            onnx=args.onnx,
            fresh=args.fresh,
            verbose=2 if args.quiet or not sys.stdout.isatty() else "auto",  # no progress bars in logs
            data_dir=data_dir,
        )
        if data_dir is not None:
            check_paths(config, data_dir)
            if args.strategy != "multiworker":  # one run per --out, locked before the split is remade
                claim_work_dir(config.resolved_work_dir())
                check_split_remake(config, args.max_per_class)
            info = make_split_from(data_dir, args.split, args.max_per_class, args.seed)
            counts = info["counts"]
            print(
                f"split {data_dir} -> {args.split}: {len(info['class_names'])} classes, "
                f"{counts['train']:,} train / {counts['val']:,} val / {counts['test']:,} test",
                file=sys.stderr,
            )
        metrics = train(config)
    except (TrainError, DatasetError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to finish the run", file=sys.stderr)
        return 130
    except OSError as exc:  # a disk filled up while training: the work folder keeps the finished epochs
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}; run the same command again to continue", file=sys.stderr)
        return 1
    if "test" in metrics:
        t = metrics["test"]
        print(
            f"test: top-1 accuracy {t['top1_accuracy']:.4f}, top-5 accuracy {t['top5_accuracy']:.4f} "
            f"on {t['drawings']:,} drawings -> {args.out}/"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
