"""Shared pytest fixtures and the hypothesis profile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import NpyServer  # tests/ is on sys.path (pytest rootdir-less "prepend" import mode)
from hypothesis import settings

# CI runs the same examples every time (a failure there must be reproducible); local runs explore anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def npy_server(tmp_path: Path) -> Iterator[NpyServer]:
    """A local bucket on 127.0.0.1 serving `tmp_path/remote/*.npy`; add files with `.add_file()`."""
    with NpyServer(tmp_path / "remote") as server:
        yield server
