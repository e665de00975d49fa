"""Pinned category lists and the manifest of the 345 remote files (see tools/make_categories.py)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATEGORIES_DIR = Path(__file__).resolve().parent / "lists"  # package data: in the wheel too
STORY_SQUAD_100 = CATEGORIES_DIR / "story_squad_100.txt"
ALL_345 = CATEGORIES_DIR / "all_345.txt"
MANIFEST = CATEGORIES_DIR / "numpy_bitmap_manifest.tsv"
OFFICIAL_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap"


class CategoryError(ValueError):
    """A category name the data set does not have."""


@dataclass(frozen=True)
class RemoteFile:
    """What the official numpy_bitmap file of one category is: exact size, checksum and row count."""

    name: str
    bytes: int
    sha256: str
    rows: int


def read_list(path: str | Path) -> list[str]:
    """Names from a text file, one per line; blank lines and # comments ignored."""
    try:  # utf-8-sig: a list saved by Windows Notepad starts with an invisible byte-order mark
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise CategoryError(f"{path}: not a UTF-8 text file") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


@cache
def all_categories() -> tuple[str, ...]:
    return tuple(read_list(ALL_345))


@cache
def manifest() -> dict[str, RemoteFile]:
    files = {}
    for line in read_list(MANIFEST):
        name, size, sha256, rows = line.split("\t")
        files[name] = RemoteFile(name, int(size), sha256, int(rows))
    return files


def file_stem(name: str) -> str:
    """On-disk name of a category, as Labs 21 did it: spaces become underscores."""
    return name.replace(" ", "_")


def validate(names: list[str], known: Sequence[str] | None = None) -> list[str]:
    """Check names against `known` (default: the pinned 345; underscores accepted for spaces, any case);
    return the real names, each once."""
    known = all_categories() if known is None else known
    by_stem = {file_stem(n).lower(): n for n in known}
    resolved = []
    for raw in names:
        name = raw.strip()
        real = by_stem.get(file_stem(name).lower())
        if real is None:
            hint = difflib.get_close_matches(name, known, n=1)
            suggestion = f", did you mean '{hint[0]}'?" if hint else ""
            raise CategoryError(f"unknown category '{name}'{suggestion}")
        if real not in resolved:
            resolved.append(real)
    return resolved


def category_names(spec: str | None, default: Path = STORY_SQUAD_100) -> list[str]:
    """`--categories` value as given: comma-separated names, or a file of one name per line; None = default."""
    if spec is None:
        names = read_list(default)
    elif Path(spec).is_file():
        names = read_list(spec)
    elif spec.lower().endswith(".txt") or "/" in spec or os.sep in spec:  # a list file, not names
        raise CategoryError(f"no such category file: {spec}")
    else:
        names = [s for s in spec.split(",") if s.strip()]
    if not names:
        raise CategoryError("no categories given")
    return names


def parse_categories(spec: str | None, default: Path = STORY_SQUAD_100) -> list[str]:
    """`--categories` value checked against the data set's 345 classes (see `category_names`)."""
    return validate(category_names(spec, default))
