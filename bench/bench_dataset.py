"""Benchmarks 2 and 3 of the data-pipeline issue (run by hand; prints figures, asserts nothing).

2. load_dataset on 100 classes x 4,000 drawings: time and peak RSS, against the Labs 21 algorithm
   (float64, np.concatenate in a loop), each in a fresh process.
3. get_dataset.py on 345 classes x 20,000 drawings (and smaller sizes, to show time is linear):
   peak RSS and time. The class files are sparse (header + zeros): the split reads only headers.

    python bench/bench_dataset.py [--classes 100] [--rows 4000] [--split-rows 5000,10000,20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quickdraw_cnn.categories import all_categories, file_stem  # noqa: E402
from quickdraw_cnn.npy_format import ROW_BYTES, header_bytes, write_bitmaps  # noqa: E402

LABS21 = """
import glob, resource, sys, time, json
import numpy as np
t = time.perf_counter()
x = np.empty((0, 784), dtype="float64"); y = np.empty((0,), dtype="int64")
for label, path in enumerate(glob.glob(sys.argv[1] + "/*.npy")):
    data = np.load(path)[:4000].astype("float64")
    x = np.concatenate((x, data), axis=0)
    y = np.append(y, np.full(len(data), label))
perm = np.random.permutation(len(y)); x, y = x[perm], y[perm]
cut = int(0.8 * len(y)); x_train, y_train, x_test, y_test = x[:cut], y[:cut], x[cut:], y[cut:]
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PROJECT = """
import resource, sys, time, json
sys.path.insert(0, sys.argv[2])
from quickdraw_cnn.dataset import load_dataset
t = time.perf_counter()
ds = load_dataset(sys.argv[1], max_per_class=4000)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_json(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_load(classes: int, rows: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        rng = np.random.default_rng(0)
        for name in all_categories()[:classes]:
            write_bitmaps(Path(tmp) / f"{file_stem(name)}.npy", rng.integers(0, 256, (rows, ROW_BYTES), np.uint8))
        payload_mb = classes * rows * ROW_BYTES / 2**20
        print(f"load_dataset: {classes} classes x {rows} drawings, uint8 payload {payload_mb:.0f} MiB")
        for label, code, extra in (
            ("labs21 float64 loop", LABS21, []),
            ("project load_dataset", PROJECT, [str(ROOT)]),
        ):
            runs = [run_json(code, tmp, *extra) for _ in range(repeats)]
            best = min(r["seconds"] for r in runs)
            rss = max(r["peak_rss_mb"] for r in runs)
            print(f"  {label:22s} best {best:6.2f} s   peak RSS {rss:7.0f} MiB ({rss / payload_mb:.2f}x payload)")


def sparse_files(folder: Path, classes: int, rows: int) -> None:
    for name in all_categories()[:classes]:
        with open(folder / f"{file_stem(name)}.npy", "wb") as f:
            f.write(header_bytes(rows))
            f.truncate(len(header_bytes(rows)) + rows * ROW_BYTES)


def bench_split(classes: int, sizes: list[int]) -> None:
    print(f"get_dataset.py split: {classes} classes (sparse files)")
    for rows in sizes:
        with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            sparse_files(data, classes, rows)
            cmd = [
                "/usr/bin/time",
                "-f",
                "%e %M",
                sys.executable,
                str(ROOT / "get_dataset.py"),
                "--data",
                str(data),
            ]
            cmd += ["--out", str(Path(tmp) / "split")]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            seconds, peak_kb = out.stderr.strip().splitlines()[-1].split()
            n = classes * rows
            print(
                f"  {n / 1e6:5.2f} M drawings ({n * ROW_BYTES / 1e9:5.1f} GB of files): {float(seconds):5.2f} s, "
                f"{float(seconds) / n * 1e9:5.0f} ns/drawing, peak RSS {int(peak_kb) / 1024:6.0f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100, help="classes for the load_dataset bench")
    parser.add_argument("--rows", type=int, default=4000, help="drawings per class for the load_dataset bench")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loader (best time is shown)")
    parser.add_argument("--split-classes", type=int, default=345, help="classes for the split bench")
    parser.add_argument("--split-rows", default="5000,10000,20000", help="drawings per class, comma-separated")
    args = parser.parse_args()
    bench_load(args.classes, args.rows, args.repeats)
    bench_split(args.split_classes, [int(s) for s in args.split_rows.split(",")])


if __name__ == "__main__":
    main()
