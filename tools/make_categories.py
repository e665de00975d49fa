r"""Regenerate the pinned category lists in quickdraw_cnn/lists/ from their upstream sources.

Sources (credited in README): tensorflow-datasets (Apache-2.0),
`tensorflow_datasets/datasets/quickdraw_bitmap/labels.txt` and `checksums.tsv`, and the Labs 21
model's `class_names.txt` (underscores for spaces). Run from the repository root:

    python tools/make_categories.py --tfds-labels ../shared/reference/tfds-quickdraw-labels.txt \
        --tfds-checksums ../shared/reference/tfds-numpy-bitmap-checksums.tsv \
        --labs21-classes ../shared/data/labs21-model/class_names.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import unquote

OFFICIAL_HEADER_BYTES = 80  # the official files were written by an old numpy: 80-byte v1.0 header
ROW_BYTES = 784


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfds-labels", type=Path, required=True, help="TFDS quickdraw_bitmap labels.txt")
    parser.add_argument("--tfds-checksums", type=Path, required=True, help="TFDS quickdraw_bitmap checksums.tsv")
    parser.add_argument("--labs21-classes", type=Path, required=True, help="Labs 21 class_names.txt")
    parser.add_argument(
        "--out", type=Path, default=Path("quickdraw_cnn/lists"), help="output folder (default: quickdraw_cnn/lists)"
    )
    args = parser.parse_args()

    labels = [line.strip() for line in args.tfds_labels.read_text().splitlines() if line.strip()]
    assert len(labels) == 345 and len(set(labels)) == 345, "expected 345 distinct labels"

    rows = []
    for line in args.tfds_checksums.read_text().splitlines():
        url, size, sha256, _ = line.split("\t")
        name = unquote(url.rsplit("/", 1)[1]).removesuffix(".npy")
        size = int(size)
        count, rest = divmod(size - OFFICIAL_HEADER_BYTES, ROW_BYTES)
        assert rest == 0, f"{name}: size {size} is not an 80-byte header plus whole rows"
        rows.append((name, size, sha256, count))
    assert sorted(r[0] for r in rows) == sorted(labels), "checksums and labels disagree"

    wanted = [line.strip().replace("_", " ") for line in args.labs21_classes.read_text().splitlines() if line.strip()]
    unknown = sorted(set(wanted) - set(labels))
    assert not unknown, f"Labs 21 classes missing from the 345: {unknown}"

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "all_345.txt").write_text("\n".join(labels) + "\n")
    (args.out / "story_squad_100.txt").write_text("\n".join(sorted(wanted)) + "\n")
    lines = ["# name\tbytes\tsha256\trows  (numpy_bitmap files; source: tensorflow-datasets checksums.tsv)"]
    lines += [f"{n}\t{s}\t{h}\t{c}" for n, s, h, c in sorted(rows)]
    (args.out / "numpy_bitmap_manifest.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(labels)} categories, {len(wanted)} Story Squad categories to {args.out}/")


if __name__ == "__main__":
    main()
