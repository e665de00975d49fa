"""Load, shuffle and split QuickDraw bitmap files at any scale, without copying the data.

A split is an index, not a second copy of the drawings: for each part (train / val / test) an int32
array of (label, row) pairs pointing into the memory-mapped `<class>.npy` files. Writing it costs
8 bytes per drawing (400 MB for all 50 M drawings); reading a batch gathers just those rows.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .categories import CategoryError, all_categories, file_stem, validate
from .files import is_within, lock_file, not_replaceable, recover_interrupted, swap_dir, sync_tree
from .npy_format import ROW_BYTES, NpyFormatError, open_bitmaps, read_header

PARTS = ("train", "val", "test")
SPLIT_FILE = "split.json"
DEFAULT_SPLIT = Path("data/split")
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """The data folder or split cannot be used; the message names the file."""


@dataclass(frozen=True)
class ClassFile:
    name: str
    path: Path
    rows: int
    header_len: int


def class_name_from_file(path: Path) -> str:
    """`alarm_clock.npy` -> `alarm clock` (the data set's real name when it is one of the 345)."""
    known = {file_stem(n): n for n in all_categories()}
    return known.get(path.stem, path.stem.replace("_", " "))


def scan_data_dir(data_dir: str | os.PathLike, categories: list[str] | None = None) -> list[ClassFile]:
    """Validated class files of a folder, sorted by class name (the label order, stable everywhere)."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DatasetError(f"data folder {data_dir} is a file, not a folder of <class>.npy files")
    if not data_dir.is_dir():
        raise DatasetError(f"data folder {data_dir} does not exist (run download_subset.py first)")
    if (data_dir / SPLIT_FILE).is_file():
        raise DatasetError(f"{data_dir} is a split (get_dataset.py's output), not the folder of class files it indexes")
    files = []
    for path in sorted(data_dir.glob("*.npy")):
        if not path.stem.isprintable():  # class_names.txt holds a name per line: a newline would shift them
            raise DatasetError(f"{path!r}: a class file's name may not hold a line break or other control character")
        try:
            rows, header_len = read_header(path)
        except NpyFormatError as exc:
            raise DatasetError(str(exc)) from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
        files.append(ClassFile(class_name_from_file(path), path, rows, header_len))
    if not files:
        raise DatasetError(f"no .npy files in {data_dir} (run download_subset.py, or download_subset.py --synthetic)")
    by_name: dict[str, ClassFile] = {}
    seen: dict[str, ClassFile] = {}  # by case-folded name: Cat.npy and cat.npy are one class twice
    for f in files:
        other = seen.get(f.name.casefold())
        if other is not None:
            raise DatasetError(f"{other.path.name} and {f.path.name} in {data_dir} are both class '{f.name}'; keep one")
        by_name[f.name] = seen[f.name.casefold()] = f
    if categories is not None:
        try:  # the folder's classes, not the pinned 345: a folder may hold classes of its own
            names = validate(categories, known=sorted(by_name))
        except CategoryError as exc:
            raise DatasetError(f"{data_dir}: {exc}") from None
        files = [by_name[c] for c in names]
    files.sort(key=lambda f: f.name)
    return files


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return n - n_val - n_test, n_val, n_test


def default_split(data_root: Path = Path("data")) -> Path:
    """The split written last under `data_root` (newest split.json; folders being written, named
    `.<name>.tmp-*`, left out), so that `python train_cnn.py` trains on what get_dataset.py wrote last
    wherever in data/ it went; data/split when there is none."""
    found = []
    for path in data_root.glob(f"**/{SPLIT_FILE}"):
        if not any(part.startswith(".") for part in path.relative_to(data_root).parts):
            try:
                found.append((path.stat().st_mtime, path.parent))
            except OSError:  # removed meanwhile
                pass
    return max(found)[1] if found else DEFAULT_SPLIT


def make_index(
    files: list[ClassFile],
    max_per_class: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Stratified, shuffled (label, row) index per part, from the first `max_per_class` rows of each file.

    Each class is split with the same fractions, so every part keeps the class balance; rows are
    disjoint by construction (one permutation per class, cut in three). Deterministic for a seed.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("fractions must be in [0, 1) and val + test < 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    used = []
    for label, f in enumerate(files):
        n = f.rows if max_per_class is None else min(f.rows, max_per_class)
        if max_per_class is not None and f.rows < max_per_class:
            print(
                f"warning: {f.path} has only {f.rows} rows (asked for {max_per_class}); using them all",
                file=sys.stderr,
            )
        counts = split_counts(n, val_fraction, test_fraction)
        wanted = [c for c, frac in zip(counts, (1.0, val_fraction, test_fraction)) if frac > 0]
        if min(wanted) == 0:
            raise DatasetError(f"{f.path}: {n} rows is too few to put drawings in every split")
        rows = rng.permutation(n).astype(np.int32)
        for part, chunk in zip(PARTS, np.split(rows, np.cumsum(counts)[:2])):
            parts[part].append(np.column_stack([np.full(len(chunk), label, np.int32), chunk]))
        used.append(n)
    index = {}
    for part in PARTS:
        pairs = np.concatenate(parts[part]) if parts[part] else np.zeros((0, 2), np.int32)
        index[part] = pairs[rng.permutation(len(pairs))]
    return index, used


def write_split(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_per_class: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    categories: list[str] | None = None,
    option: str = "--out",
) -> dict:
    """Write the split index to `out_dir` atomically (a temporary folder renamed into place).

    `out_dir` is replaced only when it is a split already (or absent): pointed by mistake at the data,
    or at any other folder or file, it is refused rather than swapped away (messages name it as `option`,
    the caller's name for it).
    """
    files = scan_data_dir(data_dir, categories)
    index, used = make_index(files, max_per_class, val_fraction, test_fraction, seed)
    out_dir = Path(out_dir).resolve()  # a link to a split folder: write the split there
    check_split_target(out_dir, Path(data_dir), option)
    data_ref = os.path.relpath(Path(data_dir).resolve(), out_dir.resolve())
    info = {
        "format": FORMAT_VERSION,
        "data_dir": data_ref,
        "data_dir_absolute": str(Path(data_dir).resolve()),
        "class_names": [f.name for f in files],
        "files": [{"name": f.name, "file": f.path.name, "rows": f.rows, "used": u} for f, u in zip(files, used)],
        "max_per_class": max_per_class,
        "fractions": {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction},
        "seed": seed,
        "counts": {p: len(index[p]) for p in PARTS},
    }
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return _write_split(out_dir, index, info)
    except OSError as exc:  # a read-only or full disk, a file where a folder goes: name the folder
        blocker = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror or exc
        raise DatasetError(f"{option} {out_dir}: cannot write the split ({why})") from None


def _write_split(out_dir: Path, index: dict[str, np.ndarray], info: dict) -> dict:
    """Several workers of one multi-worker run given the same --data write the same split into one
    shared folder: one at a time, and a split already there as it would be written is kept (only marked
    newest), so no worker swaps the folder away under another that is reading it."""
    with lock_file(out_dir.parent / f".{out_dir.name}.lock"):
        if _holds_split(out_dir, info):
            os.utime(out_dir / SPLIT_FILE)
            return info
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; a split is ordinary data
        try:
            for part in PARTS:
                np.save(tmp / f"{part}.npy", index[part])
            (tmp / SPLIT_FILE).write_text(json.dumps(info, indent=1))
            sync_tree(tmp)  # on the disk before the folder takes its final name
            recover_interrupted(out_dir)
            swap_dir(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return info


def _holds_split(split_dir: Path, info: dict) -> bool:
    """`split_dir` holds the split `info` describes, whole. The index depends only on what split.json
    records (the classes, their row counts, the fractions, the seed), so equal records mean equal parts."""
    try:
        if json.loads((split_dir / SPLIT_FILE).read_text()) != json.loads(json.dumps(info)):
            return False
        return all(len(np.load(split_dir / f"{p}.npy", mmap_mode="r")) == info["counts"][p] for p in PARTS)
    except (OSError, ValueError):
        return False


def check_split_target(out_dir: Path, data_dir: Path, option: str = "--out") -> None:
    """Refuse an `option` folder that is not a split folder: writing a split replaces the whole folder."""
    data, out = Path(data_dir).resolve(), out_dir.resolve()
    problem = not_replaceable(out, option, inside="split")
    if problem:
        raise DatasetError(problem)
    if is_within(data, out):
        raise DatasetError(f"{option} {out_dir} would replace the data folder {data_dir}; choose a folder of its own")
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{option} {out_dir} is a file, not a split folder; refusing to replace it")
    if out_dir.is_dir() and not (out_dir / SPLIT_FILE).is_file() and any(out_dir.iterdir()):
        raise DatasetError(f"{option} {out_dir} holds other files and no {SPLIT_FILE}; refusing to replace it")


def advise_random(bitmaps: Sequence[np.ndarray]) -> None:
    """Tell the kernel the class files are read at random rows (madvise MADV_RANDOM).

    Without it every page fault reads ahead ~128 KiB around the wanted 784-byte row: gathering 1% of a
    5.4 GB data set read all 5.4 GB (bench/bench_train.py, memory part). Harmless for small splits.
    """
    for mm in bitmaps:
        raw = getattr(mm, "_mmap", None)
        if raw is not None and hasattr(raw, "madvise") and hasattr(mmap, "MADV_RANDOM"):
            try:
                raw.madvise(mmap.MADV_RANDOM)
            except (OSError, ValueError):
                pass


def _load_index(path: Path) -> np.ndarray:
    """A part's index file; a damaged one named as such (numpy would suggest loading it with pickle)."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        raise DatasetError(f"{path}: not an index array (damaged? run get_dataset.py again)") from None


class Split:
    """A split written by `write_split`, reading drawings lazily from the memory-mapped class files."""

    def __init__(self, split_dir: str | os.PathLike):
        split_dir = Path(split_dir)
        meta = split_dir / SPLIT_FILE
        if not meta.is_file():
            raise DatasetError(f"no split in {split_dir} (missing {SPLIT_FILE}; run get_dataset.py first)")
        try:
            self.info = json.loads(meta.read_text())
            self.class_names: list[str] = list(self.info["class_names"])
            self.data_dir = (split_dir / self.info["data_dir"]).resolve()
            if not self.data_dir.is_dir():  # the split was moved without its data: try where it was made
                self.data_dir = Path(self.info.get("data_dir_absolute", self.data_dir))
            self.index = {p: _load_index(split_dir / f"{p}.npy") for p in PARTS}
            files = self.info["files"]
            used = np.array([int(entry["used"]) for entry in files], np.int64)
        except DatasetError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{split_dir}: unreadable split ({exc})") from None
        if [entry.get("name") for entry in files] != self.class_names:
            raise DatasetError(f"{meta}: class_names do not match the names of its files")
        for part in PARTS:
            check_index(split_dir / f"{part}.npy", self.index[part], used)
        self.bitmaps = []
        for entry in files:
            path = self.data_dir / entry["file"]
            try:
                mm = open_bitmaps(path)
            except FileNotFoundError:
                raise DatasetError(
                    f"{path}: missing, the file of class '{entry['name']}' (the split in {split_dir} needs it)"
                ) from None
            except OSError as exc:
                raise DatasetError(
                    f"{path}: cannot read ({exc.strerror or exc}; the split in {split_dir} needs it)"
                ) from None
            except NpyFormatError as exc:  # its message names the file
                raise DatasetError(f"{exc} (the split in {split_dir} needs it)") from None
            if len(mm) < entry["used"]:
                raise DatasetError(f"{path}: has {len(mm)} rows, the split uses {entry['used']}")
            self.bitmaps.append(mm)
        advise_random(self.bitmaps)

    @classmethod
    def load(cls, split_dir: str | os.PathLike) -> Split:
        return cls(split_dir)

    def __len__(self) -> int:
        return sum(len(v) for v in self.index.values())

    def labels(self, part: str) -> np.ndarray:
        return self.index[part][:, 0]

    def images(self, part: str, positions: np.ndarray | slice | None = None) -> np.ndarray:
        """uint8 (n, 28, 28, 1) drawings of a part (all, or those at `positions`), grouped reads per class."""
        pairs = self.index[part] if positions is None else self.index[part][positions]
        return gather(self.bitmaps, pairs).reshape(-1, 28, 28, 1)


def check_index(path: Path, pairs: np.ndarray, used: np.ndarray) -> None:
    """A part's (label, row) pairs must point at a class and at one of the rows the split uses: a bad
    label or row would otherwise fail (or read another class's drawing) deep inside training."""
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise DatasetError(f"{path}: not an (N, 2) integer array of (label, row) pairs")
    if not len(pairs):
        return
    labels, rows = pairs[:, 0], pairs[:, 1]
    if labels.min() < 0 or labels.max() >= len(used):
        raise DatasetError(f"{path}: labels outside 0..{len(used) - 1}")
    if rows.min() < 0:
        raise DatasetError(f"{path}: negative rows")
    for start in range(0, len(pairs), 1 << 22):  # in chunks: a 50 M-drawing index needs no big temporary
        chunk = slice(start, start + (1 << 22))
        if (rows[chunk] >= used[labels[chunk]]).any():
            raise DatasetError(f"{path}: rows beyond the rows the split uses of their class")


def gather(bitmaps: list[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    """Rows for (label, row) pairs, reading each class's rows in ascending order (sequential on disk)."""
    out = np.empty((len(pairs), ROW_BYTES), np.uint8)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    labels = pairs[order, 0]
    bounds = np.flatnonzero(np.diff(labels)) + 1
    for chunk in np.split(order, bounds):
        if len(chunk):
            out[chunk] = bitmaps[pairs[chunk[0], 0]][pairs[chunk, 1]]
    return out


@dataclass
class Dataset:
    """In-memory uint8 arrays for notebooks; labels index `class_names`."""

    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(
    data_dir: str | os.PathLike = "data",
    max_per_class: int | None = 4000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    categories: list[str] | None = None,
) -> Dataset:
    """Load a shuffled stratified split into uint8 memory (28x28x1), reading each class file once.

    Reads the used rows of a class sequentially into one small buffer and scatters them into the
    preallocated outputs, so peak memory is the uint8 payload plus one class.
    """
    files = scan_data_dir(data_dir, categories)
    index, used = make_index(files, max_per_class, val_fraction, test_fraction, seed)
    out = {p: np.empty((len(index[p]), ROW_BYTES), np.uint8) for p in PARTS}
    where = {p: np.argsort(index[p][:, 0], kind="stable") for p in PARTS}
    starts = {p: np.searchsorted(index[p][where[p], 0], np.arange(len(files) + 1)) for p in PARTS}
    for label, (f, n) in enumerate(zip(files, used)):
        with open(f.path, "rb") as fh:
            block = np.fromfile(fh, np.uint8, count=n * ROW_BYTES, offset=f.header_len).reshape(n, ROW_BYTES)
        for p in PARTS:
            pos = where[p][starts[p][label] : starts[p][label + 1]]
            out[p][pos] = block[index[p][pos, 1]]
    shaped = {p: out[p].reshape(-1, 28, 28, 1) for p in PARTS}
    return Dataset(
        [f.name for f in files],
        shaped["train"], index["train"][:, 0].copy(),
        shaped["val"], index["val"][:, 0].copy(),
        shaped["test"], index["test"][:, 0].copy(),
    )  # fmt: skip
