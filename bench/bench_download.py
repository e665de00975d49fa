"""Benchmark 1: bytes and wall time to get N classes x 4,000 drawings, by Range versus whole files.

Serves generated full-size files (default 100 classes x 120,000 rows, ~9.4 GB) from the tests' local
server (tests/http_server.py) and fetches them two ways:
- this project: `quickdraw_cnn.download.download(..., max_rows=4000)` (HTTP Range, parallel);
- Labs 21: one whole file per class with `urllib.request.urlretrieve`, one after another.
Goal (issue 2): bytes within 1% of the payload (header + 4,000*784 per class), ~30x fewer than whole files.

The files are generated cheaply: the first rows are random, the rest is a sparse hole (reads as zeros,
costs no disk), so the server still sends every byte. Wall times on loopback only show overhead; the bytes
are what a real network pays for, so projected times at a given bandwidth are printed too.

    python bench/bench_download.py                          # full size: needs ~10 GB free for the baseline
    python bench/bench_download.py --classes 20 --rows 30000  # scaled down
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from http_server import NpyServer, npy_header  # noqa: E402

from quickdraw_cnn import categories as cat  # noqa: E402
from quickdraw_cnn import download as dl  # noqa: E402
from quickdraw_cnn.npy_format import ROW_BYTES, open_bitmaps  # noqa: E402

HEADER = 80  # like the official files


def generate(root: Path, names: list[str], rows: int, real_rows: int) -> None:
    """Full-size files: `real_rows` random rows, then a sparse hole up to `rows` rows."""
    root.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(0).integers(0, 256, size=(real_rows, ROW_BYTES), dtype=np.uint8)
    for i, name in enumerate(names):
        block[:, 0] = i  # each class distinguishable
        with open(root / f"{name}.npy", "wb") as f:
            f.write(npy_header(rows, HEADER))
            f.write(block.tobytes())
            f.truncate(HEADER + rows * ROW_BYTES)


def human(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, default=100, help="number of classes (Story Squad order; default 100)")
    p.add_argument("--rows", type=int, default=120_000, help="rows per generated file (default 120,000)")
    p.add_argument("--take", type=int, default=4000, help="drawings per class to fetch (default 4,000)")
    p.add_argument("--workers", type=int, default=8, help="parallel downloads for the Range run (default 8)")
    p.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new one in the temp dir)")
    p.add_argument("--skip-baseline", action="store_true", help="only run the Range download")
    p.add_argument("--mbit", type=float, default=100.0, help="bandwidth for projected times (default 100 Mbit/s)")
    args = p.parse_args()

    names = cat.read_list(cat.STORY_SQUAD_100)[: args.classes]
    if len(names) < args.classes:
        names = list(cat.all_categories())[: args.classes]
    scratch = Path(tempfile.mkdtemp(prefix="bench_download_", dir=args.dir))
    whole_bytes = len(names) * (HEADER + args.rows * ROW_BYTES)
    free = shutil.disk_usage(scratch).free
    if not args.skip_baseline and whole_bytes * 1.05 > free:
        sys.exit(f"baseline needs {human(whole_bytes)} of disk, {human(free)} free: scale down or --skip-baseline")
    payload = len(names) * (HEADER + args.take * ROW_BYTES)
    print(f"{len(names)} classes x {args.rows:,} rows served ({human(whole_bytes)}), taking {args.take:,} each")
    print(f"payload (header + {args.take:,}*784 per class): {payload:,} bytes ({human(payload)})")
    try:
        t = time.perf_counter()
        generate(scratch / "remote", names, args.rows, min(args.rows, int(args.take * 1.25) + 1))
        print(f"generated in {time.perf_counter() - t:.1f} s (sparse beyond the first rows)")
        with NpyServer(scratch / "remote") as server:
            t = time.perf_counter()
            report = dl.download(
                names,
                scratch / "ours",
                max_rows=args.take,
                base_url=server.base_url,
                workers=args.workers,
                progress=False,
                log=lambda s: None,
            )
            ours_s = time.perf_counter() - t
            assert not report.failed, report.summary()
            ours = server.bytes_sent()
            requests = len(server.records())
            for i, name in enumerate(names[:3]):
                got = open_bitmaps(scratch / "ours" / f"{cat.file_stem(name)}.npy")
                assert got.shape == (args.take, ROW_BYTES) and (got[:, 0] == i).all()
            print(
                f"ours (Range, {args.workers} workers): {ours:,} bytes ({human(ours)}), "
                f"{ours / payload:.5f}x payload ({ours - payload:+,} bytes), {requests} requests "
                f"(incl. 1 HEAD), wall {ours_s:.2f} s"
            )
            if args.skip_baseline:
                return
            server.reset()
            base_dir = scratch / "labs21"
            base_dir.mkdir()
            t = time.perf_counter()
            for name in names:  # Labs 21: urllib, whole file, one class after another
                url = f"{server.base_url}/{urllib.parse.quote(name)}.npy"
                urllib.request.urlretrieve(url, base_dir / f"{cat.file_stem(name)}.npy")
            labs_s = time.perf_counter() - t
            labs = server.bytes_sent()
            shutil.rmtree(base_dir)
            print(
                f"Labs 21 (whole files, sequential urllib): {labs:,} bytes ({human(labs)}), "
                f"{labs / payload:.2f}x payload, wall {labs_s:.2f} s"
            )
            bps = args.mbit * 1e6 / 8
            print(
                f"=> {labs / ours:.1f}x fewer bytes, {labs_s / ours_s:.1f}x faster on loopback; "
                f"at {args.mbit:g} Mbit/s: ~{ours / bps:.0f} s versus ~{labs / bps:.0f} s"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"removed {scratch}", file=sys.stderr)


if __name__ == "__main__":
    main()
