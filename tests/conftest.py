"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# ---- download fixtures (owner: download helper) -------------------------------------------------
from http_server import NpyServer  # tests/ is on sys.path (pytest rootdir-less "prepend" import mode)


@pytest.fixture
def npy_server(tmp_path: Path) -> Iterator[NpyServer]:
    """A local bucket on 127.0.0.1 serving `tmp_path/remote/*.npy`; add files with `.add_file()`."""
    with NpyServer(tmp_path / "remote") as server:
        yield server


# ---- end of download fixtures ---------------------------------------------------------------------
