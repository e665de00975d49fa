"""Shuffle and split the downloaded QuickDraw bitmaps into train / validation / test.

Writes an index of (class, row) pairs into --out (split.json + train.npy, val.npy, test.npy), not a
second copy of the drawings, so it works the same for 4,000 drawings per class and for all ~50 M.
train_cnn.py reads it (with no --split, the newest split under data/). In a notebook, use
`quickdraw_cnn.dataset.load_dataset()` instead.
"""

from __future__ import annotations

import argparse
import sys

from quickdraw_cnn.categories import CategoryError, category_names
from quickdraw_cnn.cli import ArgumentParser, fraction, non_negative_int, positive_int
from quickdraw_cnn.dataset import DatasetError, write_split


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data", help="folder of <class>.npy bitmap files (default: data)")
    parser.add_argument(
        "--out",
        default="data/split",
        help="folder to write the split into, replacing the split there; refused when it holds anything "
        "else (default: data/split)",
    )
    parser.add_argument(
        "--max-per-class",
        type=positive_int,
        default=None,
        help="use at most the first N drawings of each class (default: every row present)",
    )
    parser.add_argument("--val-fraction", type=fraction, default=0.1, help="share for validation (default: 0.1)")
    parser.add_argument("--test-fraction", type=fraction, default=0.1, help="share for test (default: 0.1)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="shuffling seed; same seed, same split (default: 0)"
    )
    parser.add_argument(
        "--categories",
        default=None,
        help="only these classes (of the files in --data): comma-separated names or a file, one per line "
        "(default: all in --data)",
    )
    args = parser.parse_args(argv)
    if args.val_fraction + args.test_fraction >= 1:
        parser.error(
            f"--val-fraction {args.val_fraction:g} and --test-fraction {args.test_fraction:g} leave nothing to train on"
        )
    try:
        categories = category_names(args.categories) if args.categories is not None else None
        info = write_split(
            args.data,
            args.out,
            args.max_per_class,
            args.val_fraction,
            args.test_fraction,
            args.seed,
            categories,
        )
    except (DatasetError, CategoryError, OSError) as exc:
        print(f"get_dataset.py: error: {exc}", file=sys.stderr)
        return 1
    counts = info["counts"]
    print(
        f"{len(info['class_names'])} classes: {counts['train']:,} train, {counts['val']:,} validation, "
        f"{counts['test']:,} test drawings -> {args.out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
