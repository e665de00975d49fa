"""The split: labels agree with names, stratified, deterministic, disjoint, and bad input is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quickdraw_cnn.dataset import DatasetError, Split, load_dataset, make_index, scan_data_dir, write_split
from quickdraw_cnn.npy_format import header_bytes, write_bitmaps

ROOT = Path(__file__).resolve().parents[1]
# Files named so that glob order (alarm_clock, cat, The_Eiffel_Tower...) differs from label order.
CLASSES = {"cat": 300, "alarm_clock": 250, "The_Eiffel_Tower": 200, "zigzag": 280}


def encoded_rows(class_id: int, n: int) -> np.ndarray:
    """Rows whose pixels say which class and row they are, so any mix-up is visible."""
    rows = np.zeros((n, 784), np.uint8)
    rows[:, 0] = class_id
    rows[:, 1] = np.arange(n) // 256
    rows[:, 2] = np.arange(n) % 256
    return rows


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for class_id, (stem, n) in enumerate(CLASSES.items()):
        write_bitmaps(folder / f"{stem}.npy", encoded_rows(class_id + 1, n))
    return folder


def file_id(name: str) -> int:
    """The class id written into a file, looked up from its real (spaced) name."""
    return list(CLASSES).index(name.replace(" ", "_")) + 1


def decode(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = images.reshape(len(images), 784).astype(np.int64)
    return flat[:, 0], flat[:, 1] * 256 + flat[:, 2]


def test_labels_agree_with_sorted_class_names(data_dir: Path, tmp_path: Path) -> None:
    info = write_split(data_dir, tmp_path / "split")
    split = Split.load(tmp_path / "split")
    assert split.class_names == sorted(split.class_names) == info["class_names"]
    assert split.class_names == ["The Eiffel Tower", "alarm clock", "cat", "zigzag"]
    for part in ("train", "val", "test"):
        ids, rows = decode(split.images(part))
        expected_ids = [file_id(split.class_names[label]) for label in split.labels(part)]
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(rows, split.index[part][:, 1])


def test_split_is_stratified_disjoint_and_complete(data_dir: Path) -> None:
    files = scan_data_dir(data_dir)
    index, used = make_index(files, max_per_class=None, val_fraction=0.1, test_fraction=0.2, seed=3)
    seen = set()
    for part, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        pairs = {tuple(p) for p in index[part].tolist()}
        assert len(pairs) == len(index[part]), f"duplicate drawings in {part}"
        assert not pairs & seen, f"{part} shares drawings with another part"
        seen |= pairs
        counts = np.bincount(index[part][:, 0], minlength=len(files))
        np.testing.assert_allclose(counts, np.array(used) * share, atol=1)
    assert seen == {(label, row) for label, n in enumerate(used) for row in range(n)}


def test_split_is_deterministic_and_shuffled(data_dir: Path) -> None:
    files = scan_data_dir(data_dir)
    a, _ = make_index(files, seed=7)
    b, _ = make_index(files, seed=7)
    c, _ = make_index(files, seed=8)
    for part in a:
        np.testing.assert_array_equal(a[part], b[part])
    assert not np.array_equal(a["train"], c["train"])
    labels = a["train"][:, 0]
    assert (np.diff(labels) != 0).sum() > len(labels) / 3, "train must be shuffled across classes"


def test_max_per_class_takes_the_first_rows(data_dir: Path) -> None:
    files = scan_data_dir(data_dir)
    index, used = make_index(files, max_per_class=100)
    assert used == [100] * len(files)
    all_rows = np.concatenate([index[p][:, 1] for p in index])
    assert all_rows.max() == 99


def test_load_dataset_matches_the_written_split(data_dir: Path, tmp_path: Path) -> None:
    write_split(data_dir, tmp_path / "split", max_per_class=150, seed=5)
    split = Split.load(tmp_path / "split")
    ds = load_dataset(data_dir, max_per_class=150, seed=5)
    assert ds.class_names == split.class_names
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (28, 28, 1)
    np.testing.assert_array_equal(ds.x_train, split.images("train"))
    np.testing.assert_array_equal(ds.y_test, split.labels("test"))
    np.testing.assert_array_equal(split.images("val", slice(3, 9)), split.images("val")[3:9])


def test_fewer_rows_than_asked_is_named(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    make_index(scan_data_dir(data_dir), max_per_class=260)
    err = capsys.readouterr().err
    assert "The_Eiffel_Tower.npy has only 200 rows" in err and "alarm_clock.npy has only 250" in err


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "get_dataset.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_writes_split_and_replaces_it_whole(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    result = run_cli("--data", str(data_dir), "--out", str(out), "--max-per-class", "200", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "4 classes: 640 train, 80 validation, 80 test" in result.stdout
    first = np.load(out / "train.npy")
    result = run_cli("--data", str(data_dir), "--out", str(out), "--max-per-class", "100", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert len(np.load(out / "train.npy")) == 320 != len(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "split"], "no temporary folder or lock left"


RACE = """
import sys
from quickdraw_cnn.dataset import write_split
for _ in range(20):
    write_split(sys.argv[1], sys.argv[2])
"""


def test_workers_writing_the_same_split_at_once_all_succeed(data_dir: Path, tmp_path: Path) -> None:
    """Multi-worker runs given the same --data on a shared folder each write the split: one swapped
    the folder away while another was swapping it ("cannot write the split (No such file ...)")."""
    out = tmp_path / "split"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(data_dir), str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], errors
    want = write_split(data_dir, tmp_path / "alone")
    assert Split.load(out).info["counts"] == want["counts"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["alone", "data", "split"], "no temporary folder or lock left"


def test_rewriting_the_same_split_keeps_the_folder_and_marks_it_newest(data_dir: Path, tmp_path: Path) -> None:
    import os

    out = tmp_path / "split"
    write_split(data_dir, out)
    folder, written = out.stat().st_ino, (out / "split.json").stat().st_mtime
    os.utime(out / "split.json", (written - 100, written - 100))
    write_split(data_dir, out)  # the same split: a worker reading it is not disturbed
    assert out.stat().st_ino == folder and (out / "split.json").stat().st_mtime >= written
    write_split(data_dir, out, seed=1)  # another split replaces it
    assert out.stat().st_ino != folder and Split.load(out).info["seed"] == 1


def write_raw(path: Path, payload: bytes) -> None:
    path.write_bytes(payload)


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("cat.npy", b"<html>not found</html>", "not a .npy file"),
        ("cat.npy", b"", "not a .npy file"),
        ("cat.npy", header_bytes(10) + bytes(784 * 9), "truncated"),
        ("cat.npy", header_bytes(10).replace(b"|u1", b"<f4") + bytes(7840), "dtype"),
        ("cat.npy", header_bytes(10).replace(b"784", b"100") + bytes(7840), "shape"),
    ],
)
def test_cli_refuses_bad_files_naming_them(tmp_path: Path, name: str, payload: bytes, message: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_bitmaps(data / "dog.npy", encoded_rows(1, 50))
    write_raw(data / name, payload)
    out = tmp_path / "split"
    result = run_cli("--data", str(data), "--out", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data / name) in lines[0] and message in lines[0], result.stderr
    assert not out.exists(), "nothing may be written when the input is bad"


def test_bad_input_keeps_the_previous_split(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    assert run_cli("--data", str(data_dir), "--out", str(out)).returncode == 0
    before = (out / "split.json").read_text()
    write_raw(data_dir / "broken.npy", b"\x93NUMPY garbage")
    result = run_cli("--data", str(data_dir), "--out", str(out))
    assert result.returncode == 1 and "broken.npy" in result.stderr
    assert (out / "split.json").read_text() == before


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_cli_refuses_missing_or_empty_folder(tmp_path: Path, setup: str) -> None:
    data = tmp_path / "data"
    if setup == "empty":
        data.mkdir()
        (data / "notes.txt").write_text("no drawings here")
    result = run_cli("--data", str(data), "--out", str(tmp_path / "split"))
    assert result.returncode == 1
    assert str(data) in result.stderr and "download_subset.py" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_names_what_is_wrong_with_the_folders_and_fractions(data_dir: Path, tmp_path: Path) -> None:
    """Each was one line, but of numpy's or the OS's words: 'test.npy: dtype is <i4', '[Errno 17] File
    exists: ...', 'does not exist' for a file; and fractions leaving nothing to train on exited 1."""
    split = tmp_path / "split"
    assert run_cli("--data", str(data_dir), "--out", str(split)).returncode == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args, status, message in [
        (["--data", str(split), "--out", str(tmp_path / "s2")], 1, f"{split} is a split (get_dataset.py's output)"),
        (["--data", str(data_dir / "cat.npy"), "--out", str(tmp_path / "s2")], 1, "is a file, not a folder of"),
        (["--data", str(data_dir), "--out", str(a_file / "s")], 1, f"cannot write the split ({a_file} is a file"),
        (["--data", str(data_dir), "--val-fraction", "0.6", "--test-fraction", "0.4"], 2, "leave nothing to train on"),
    ]:
        result = run_cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == status and len(lines) == 1 and message in lines[0], result.stderr


def test_too_few_rows_for_every_part_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_bitmaps(data / "cat.npy", encoded_rows(1, 3))
    with pytest.raises(DatasetError, match="cat.npy: 3 rows is too few"):
        write_split(data, tmp_path / "split")


def test_split_notices_a_data_file_truncated_later(data_dir: Path, tmp_path: Path) -> None:
    write_split(data_dir, tmp_path / "split")
    write_bitmaps(data_dir / "cat.npy", encoded_rows(3, 10))
    with pytest.raises(DatasetError, match="cat.npy: has 10 rows, the split uses 300"):
        Split.load(tmp_path / "split")
    with pytest.raises(DatasetError, match="missing split.json"):
        Split.load(tmp_path / "nowhere")


def test_unknown_category_is_refused(data_dir: Path, tmp_path: Path) -> None:
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"), "--categories", "cat,zigzg")
    assert result.returncode == 1 and "unknown category 'zigzg', did you mean 'zigzag'?" in result.stderr
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"), "--categories", "cat,zigzag")
    assert result.returncode == 0 and "2 classes" in result.stdout


@pytest.mark.parametrize("script", ["get_dataset.py", "download_subset.py", "download_dataset.py"])
def test_data_scripts_never_import_tensorflow(script: str, data_dir: Path, tmp_path: Path) -> None:
    """They must start in a second: run each script's real work and look at what it imported."""
    args = {
        "get_dataset.py": ["--data", str(data_dir), "--out", str(tmp_path / "split")],
        "download_subset.py": ["--synthetic", "--categories", "star", "--max-per-class", "20", "--out", str(tmp_path)],
        "download_dataset.py": ["--synthetic", "--categories", "line", "--max-per-class", "20", "--out", str(tmp_path)],
    }[script]
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}] + {args!r}\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / script)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('IMPORTED', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "IMPORTED []" in result.stdout


def test_out_that_is_not_a_split_is_refused_and_left_alone(data_dir: Path, tmp_path: Path) -> None:
    """Writing a split replaces the --out folder whole: pointed at the data or anything else, it must refuse."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me too")
    before = sorted(p.name for p in data_dir.iterdir())
    cases = {
        str(data_dir): "would replace the data folder",
        str(tmp_path): "would replace the data folder",  # a folder holding the data
        str(notes): "holds other files and no split.json",
        str(a_file): "is a file, not a split folder",
        str(data_dir / "cat.npy"): "is a file, not a split folder",
    }
    for out, message in cases.items():
        result = run_cli("--data", str(data_dir), "--out", out)
        assert result.returncode == 1 and message in result.stderr, (out, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in data_dir.iterdir()) == before
    assert (notes / "notes.txt").read_text() == "keep me" and a_file.read_text() == "keep me too"
    assert not list(tmp_path.glob(".*old*")) and not list(tmp_path.glob(".notes.*"))
    split = data_dir / "split"  # inside the data folder is fine (the default: data/split)
    assert run_cli("--data", str(data_dir), "--out", str(split)).returncode == 0
    assert run_cli("--data", str(data_dir), "--out", str(split), "--seed", "3").returncode == 0
    assert Split.load(split).class_names == ["The Eiffel Tower", "alarm clock", "cat", "zigzag"]


def test_two_files_of_one_class_are_refused(data_dir: Path, tmp_path: Path) -> None:
    write_bitmaps(data_dir / "alarm clock.npy", encoded_rows(9, 100))
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"))
    assert result.returncode == 1 and not (tmp_path / "s").exists()
    assert "alarm clock.npy and alarm_clock.npy" in result.stderr and "both class 'alarm clock'" in result.stderr
    (data_dir / "alarm clock.npy").unlink()
    write_bitmaps(data_dir / "Cat.npy", encoded_rows(9, 100))  # became a second class, 'Cat'
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"))
    assert result.returncode == 1 and not (tmp_path / "s").exists()
    assert "Cat.npy and cat.npy" in result.stderr or "cat.npy and Cat.npy" in result.stderr, result.stderr


def test_a_class_name_with_a_line_break_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """class_names.txt holds one name per line: a file 'my<newline>robot.npy' made 5 lines for 4 outputs."""
    write_bitmaps(data_dir / "my\nrobot.npy", encoded_rows(9, 100))
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"))
    assert result.returncode == 1 and not (tmp_path / "s").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "my\\nrobot.npy" in lines[0] and "may not hold a line break" in lines[0], lines


def test_the_default_split_is_the_newest_under_data(tmp_path: Path) -> None:
    import os

    from quickdraw_cnn.dataset import DEFAULT_SPLIT, default_split

    assert default_split(tmp_path / "data") == DEFAULT_SPLIT  # nothing written yet
    for age, folder in enumerate(["demo/.split.tmp-1", "demo/split", "split", "old"]):  # newest first
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "split.json").write_text("{}")
        os.utime(tmp_path / "data" / folder / "split.json", (1e9 - age, 1e9 - age))
    assert default_split(tmp_path / "data") == tmp_path / "data" / "demo" / "split"  # a split being written is not


def test_a_mount_point_is_refused_as_the_split_folder(data_dir: Path) -> None:
    """A split replaces its whole folder; a mount point cannot be renamed (it failed with a raw errno)."""
    result = run_cli("--data", str(data_dir), "--out", "/")
    assert result.returncode == 1 and "--out / is a mount point, which cannot be replaced whole" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_categories_are_the_data_folders_own_names(data_dir: Path, tmp_path: Path) -> None:
    """A class outside the 345 can be chosen; a list saved with a byte-order mark works; bad text is refused."""
    write_bitmaps(data_dir / "my_robot.npy", encoded_rows(7, 100))
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfmy robot\r\nCAT\r\n")
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"), "--categories", str(bom))
    assert result.returncode == 0, result.stderr
    assert Split.load(tmp_path / "s").class_names == ["cat", "my robot"]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "t"), "--categories", str(latin1))
    assert result.returncode == 1 and result.stderr.strip().endswith("latin1.txt: not a UTF-8 text file")
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "t"), "--categories", "my robto")
    assert result.returncode == 1 and "unknown category 'my robto', did you mean 'my robot'?" in result.stderr
    for spec, message in [("", "no categories given"), (str(tmp_path / "missing.txt"), "no such category file")]:
        result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "t"), "--categories", spec)
        assert result.returncode == 1 and message in result.stderr and not (tmp_path / "t").exists(), spec


@pytest.mark.parametrize(
    "header",
    [
        {"descr": "xyz", "fortran_order": False, "shape": (3, 784)},
        {"descr": "|u1", "fortran_order": False, "shape": (3.5, 784)},
        {"descr": "|u1", "fortran_order": False, "shape": (-3, 784)},
    ],
)
def test_a_nonsense_header_names_the_file(data_dir: Path, tmp_path: Path, header: dict) -> None:
    body = repr(header).encode("latin1")
    body += b" " * (-(10 + len(body) + 1) % 64) + b"\n"
    (data_dir / "dog.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + bytes(3 * 784))
    result = run_cli("--data", str(data_dir), "--out", str(tmp_path / "s"))
    assert result.returncode == 1 and "dog.npy" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "script, args",
    [
        ("get_dataset.py", ["--seed", "x"]),
        ("download_subset.py", ["--workers", "0"]),
        ("download_dataset.py", ["--no-such-option"]),
        ("train_cnn.py", ["--epochs", "0"]),
        ("load_model_predict.py", []),
    ],
)
def test_every_script_refuses_a_bad_argument_in_one_line(script: str, args: list[str]) -> None:
    """argparse would print its whole usage block first; one line says what is wrong and where to look."""
    result = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{script}: error: ") and lines[0].endswith("(see --help)")
