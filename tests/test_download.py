"""The downloader against a local server: exact bytes, resume, extension, atomicity, checksums, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from http_server import NpyServer
from tqdm import tqdm

from quickdraw_cnn import categories as cat
from quickdraw_cnn import download as dl
from quickdraw_cnn.dataset import write_split
from quickdraw_cnn.npy_format import open_bitmaps

ROOT = Path(__file__).resolve().parents[1]
FAST = {"retries": 2, "backoff": 0.01, "timeout": 5.0, "progress": False, "log": lambda s: None}


def fetch(server: NpyServer, out: Path, names: list[str], rows: int | None, **kw: object) -> dl.DownloadReport:
    return dl.download(names, out, max_rows=rows, base_url=server.base_url, **{**FAST, **kw})


def loads(path: Path) -> bool:
    """Would a later reader accept this file? (numpy itself and the project's validating reader)"""
    try:
        np.load(path, allow_pickle=False)
        open_bitmaps(path)
        return True
    except Exception:
        return False


def no_loadable_file(out: Path, but: str = "") -> bool:
    return not any(loads(p) for p in out.iterdir() if p.is_file() and p.name not in ("manifest.json", but))


def test_partial_download_fetches_exactly_header_plus_rows(npy_server: NpyServer, tmp_path: Path) -> None:
    rows = npy_server.add_file("cat", 3000, seed=1)
    out = tmp_path / "data"
    report = fetch(npy_server, out, ["cat"], 400)
    assert report.failed == []
    got = np.load(out / "cat.npy")
    assert got.shape == (400, 784) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, rows[:400])
    assert npy_server.bytes_sent("cat") == 80 + 400 * 784  # the pinned header length was the right guess
    assert [r.range for r in npy_server.records("cat") if r.method == "GET"] == [f"bytes=0-{80 + 400 * 784 - 1}"]
    entry = dl.read_manifest(out)["cat.npy"]
    assert entry["rows"] == 400 and entry["complete"] is False and entry["source"].endswith("/cat.npy")
    assert entry["bytes"] == (out / "cat.npy").stat().st_size
    assert entry["sha256"] == hashlib.sha256((out / "cat.npy").read_bytes()).hexdigest()


def test_longer_header_than_guessed_costs_one_extra_request_not_extra_bytes(
    npy_server: NpyServer, tmp_path: Path
) -> None:
    rows = npy_server.add_file("alarm clock", 1000, header_len=128)  # numpy >= 1.x writes 128 bytes
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["alarm clock"], 250).failed == []
    np.testing.assert_array_equal(np.load(out / "alarm_clock.npy"), rows[:250])
    assert npy_server.bytes_sent("alarm clock") == 128 + 250 * 784
    assert all(r.path == "/alarm%20clock.npy" for r in npy_server.records("alarm clock"))


def test_more_rows_than_the_file_has_gives_the_whole_file(npy_server: NpyServer, tmp_path: Path) -> None:
    npy_server.add_file("dog", 120)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["dog"], 500).failed == []
    assert (out / "dog.npy").read_bytes() == (npy_server.root / "dog.npy").read_bytes()
    assert dl.read_manifest(out)["dog.npy"]["complete"] is True


def test_resume_after_mid_body_drop_continues_from_last_complete_row(npy_server: NpyServer, tmp_path: Path) -> None:
    rows = npy_server.add_file("cat", 2000, seed=2)
    npy_server.add_fault("cat", "drop", after=100_000)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 1000).failed == []
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:1000])
    complete = (100_000 - 80) // 784
    gets = [r.range for r in npy_server.records("cat") if r.method == "GET"]
    assert gets[1] == f"bytes={80 + complete * 784}-{80 + 1000 * 784 - 1}"
    assert npy_server.bytes_sent("cat") < 80 + 1000 * 784 + 784  # at most a torn row fetched twice
    assert not (out / "cat.npy.part").exists() and not (out / "cat.npy.part.json").exists()


def test_resume_across_runs_keeps_the_part_file(npy_server: NpyServer, tmp_path: Path) -> None:
    rows = npy_server.add_file("cat", 2000, seed=3)
    npy_server.add_fault("cat", "drop", after=200_000)
    npy_server.add_fault("cat", "error500", times=5)
    out = tmp_path / "data"
    report = fetch(npy_server, out, ["cat"], 1500, retries=1)
    assert report.failed == ["cat"] and "rerun to resume" in report.results[0].error
    assert not (out / "cat.npy").exists() and no_loadable_file(out)
    kept = ((out / "cat.npy.part").stat().st_size - 80) // 784
    assert kept == (200_000 - 80) // 784
    npy_server.reset()
    assert fetch(npy_server, out, ["cat"], 1500).failed == []
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:1500])
    probe, rest = [r.range for r in npy_server.records("cat") if r.method == "GET"]
    assert probe == f"bytes=0-{dl.PROBE_BYTES - 1}"
    assert rest == f"bytes={80 + kept * 784}-{80 + 1500 * 784 - 1}"


def test_asking_for_more_rows_fetches_only_the_missing_range(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = npy_server.add_file("cat", 3000, seed=4)
    _pin(monkeypatch, npy_server.root / "cat.npy")
    out = tmp_path / "data"
    fetch(npy_server, out, ["cat"], 200)
    npy_server.reset()
    assert fetch(npy_server, out, ["cat"], 700).failed == []
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:700])
    assert npy_server.bytes_sent("cat") == dl.PROBE_BYTES + 500 * 784
    assert dl.read_manifest(out)["cat.npy"]["rows"] == 700
    npy_server.reset()  # fewer rows than present, or the same again: nothing to fetch, not even a probe
    report = fetch(npy_server, out, ["cat"], 300)
    assert report.results[0].status == "skipped" and npy_server.records() == []
    # and up to the whole file: byte-identical to the remote file, so the pinned checksum holds
    assert fetch(npy_server, out, ["cat"], None).failed == []
    assert (out / "cat.npy").read_bytes() == (npy_server.root / "cat.npy").read_bytes()
    assert npy_server.bytes_sent("cat") == dl.PROBE_BYTES + (3000 - 700) * 784


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("html", {}),
        ("404", {}),
        ("corrupt_header", {}),
        ("error500", {"times": 10}),
        ("drop", {"times": 10, "after": 50}),
        ("wrong_length", {"times": 10}),
        ("short_length", {"times": 10}),
    ],
)
def test_failures_leave_no_loadable_file(npy_server: NpyServer, tmp_path: Path, kind: str, params: dict) -> None:
    npy_server.add_file("cat", 500)
    npy_server.add_fault("cat", kind, **params)
    out = tmp_path / "data"
    report = fetch(npy_server, out, ["cat"], 300, retries=1)
    assert report.failed == ["cat"]
    assert not (out / "cat.npy").exists()
    assert no_loadable_file(out)
    assert "cat.npy" not in dl.read_manifest(out)


@pytest.mark.parametrize("kind", ["html", "corrupt_header", "drop"])
def test_failed_extension_keeps_the_previous_good_file(npy_server: NpyServer, tmp_path: Path, kind: str) -> None:
    rows = npy_server.add_file("cat", 900)
    out = tmp_path / "data"
    fetch(npy_server, out, ["cat"], 100)
    before = (out / "cat.npy").read_bytes()
    npy_server.add_fault("cat", kind, times=10)
    assert fetch(npy_server, out, ["cat"], 800, retries=1).failed == ["cat"]
    assert (out / "cat.npy").read_bytes() == before
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:100])
    assert no_loadable_file(out, but="cat.npy")


@pytest.mark.parametrize(
    ("kind", "params"),
    [("error500", {"times": 2}), ("short_length", {}), ("wrong_length", {}), ("ignore_range", {})],
)
def test_transient_faults_are_retried(npy_server: NpyServer, tmp_path: Path, kind: str, params: dict) -> None:
    rows = npy_server.add_file("cat", 600)
    npy_server.add_fault("cat", kind, **params)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 450).failed == []
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:450])


def test_retry_waits_double_up_to_a_minute(npy_server: NpyServer, tmp_path: Path, monkeypatch) -> None:
    """Doubling had no ceiling: 20 retries of a failing server waited 291 hours for one class."""
    npy_server.add_file("cat", 50)
    npy_server.add_fault("cat", "error500", times=12)
    waits: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", waits.append)
    assert fetch(npy_server, tmp_path / "data", ["cat"], 10, retries=12, backoff=10.0).failed == []
    assert waits == [10.0, 20.0, 40.0] + [60.0] * 9


def test_slow_server_times_out_and_is_retried(npy_server: NpyServer, tmp_path: Path) -> None:
    rows = npy_server.add_file("cat", 300)
    npy_server.add_fault("cat", "slow", delay=1.5)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 200, timeout=0.5).failed == []
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:200])
    assert len([r for r in npy_server.records("cat") if r.method == "GET"]) == 2


def _pin(monkeypatch: pytest.MonkeyPatch, path: Path, sha256: str | None = None) -> None:
    data = path.read_bytes()
    rows = (len(data) - 80) // 784
    name = path.stem
    fake = {name: cat.RemoteFile(name, len(data), sha256 or hashlib.sha256(data).hexdigest(), rows)}
    monkeypatch.setattr(cat, "manifest", lambda: fake)


def test_whole_file_is_verified_against_pinned_checksum(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 700)
    _pin(monkeypatch, npy_server.root / "cat.npy")
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], None).failed == []
    assert (out / "cat.npy").read_bytes() == (npy_server.root / "cat.npy").read_bytes()
    entry = dl.read_manifest(out)["cat.npy"]
    assert entry["complete"] is True and entry["pinned_sha256_ok"] is True
    npy_server.reset()  # complete and recorded: skipped without a request
    assert fetch(npy_server, out, ["cat"], None).results[0].status == "skipped" and npy_server.records() == []


def test_a_whole_file_fetched_as_first_rows_is_verified_when_all_is_asked(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-per-class 1000 on a 700-row file gets it whole, unverified; `all` then said "already
    complete" without checking the pinned checksum."""
    npy_server.add_file("cat", 700)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 1000).failed == []
    assert dl.read_manifest(out)["cat.npy"]["complete"] is True
    _pin(monkeypatch, npy_server.root / "cat.npy", sha256="0" * 64)  # the mirror is not the official file
    report = fetch(npy_server, out, ["cat"], None)
    assert report.failed == ["cat"] and "checksum mismatch" in report.results[0].error
    _pin(monkeypatch, npy_server.root / "cat.npy")  # it is: verified on disk, nothing fetched
    npy_server.reset()
    assert fetch(npy_server, out, ["cat"], None).results[0].status == "skipped" and npy_server.records() == []
    assert dl.read_manifest(out)["cat.npy"]["pinned_sha256_ok"] is True


def test_whole_file_resumed_after_drops_still_matches_pinned_checksum(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 1500)
    _pin(monkeypatch, npy_server.root / "cat.npy")
    npy_server.add_fault("cat", "drop", after=300_000)
    npy_server.add_fault("cat", "drop", after=200_000)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], None).failed == []
    assert dl.read_manifest(out)["cat.npy"]["pinned_sha256_ok"] is True
    assert npy_server.bytes_sent("cat") < 80 + 1500 * 784 + 2 * 784


def test_checksum_mismatch_fails_and_leaves_nothing(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 700)
    _pin(monkeypatch, npy_server.root / "cat.npy", sha256="0" * 64)
    out = tmp_path / "data"
    report = fetch(npy_server, out, ["cat"], None)
    assert report.failed == ["cat"] and "checksum mismatch" in report.results[0].error
    assert sorted(p.name for p in out.iterdir()) == []


def test_unpinned_whole_file_is_checked_by_header_and_size_only(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 300)
    monkeypatch.setattr(cat, "manifest", lambda: {})
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], None).failed == []
    assert "pinned_sha256_ok" not in dl.read_manifest(out)["cat.npy"]


def test_official_file_already_present_is_adopted_not_refetched(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 400)
    _pin(monkeypatch, npy_server.root / "cat.npy")
    out = tmp_path / "data"
    out.mkdir()
    (out / "cat.npy").write_bytes((npy_server.root / "cat.npy").read_bytes())  # e.g. left by Labs 21
    assert fetch(npy_server, out, ["cat"], 100).results[0].status == "skipped"
    assert npy_server.records() == [] and dl.read_manifest(out)["cat.npy"]["complete"] is True


def test_file_from_another_source_is_replaced(npy_server: NpyServer, tmp_path: Path) -> None:
    rows = npy_server.add_file("cat", 400, seed=9)
    out = tmp_path / "data"
    out.mkdir()
    (out / "cat.npy").write_bytes(dl.fixed_length_header(50, 128) + bytes(50 * 784))
    dl.record_files(out, [dl._entry("cat", out / "cat.npy", "synthetic", 50, True)])
    assert fetch(npy_server, out, ["cat"], 100).failed == []  # not extended with real rows: refetched
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:100])
    assert dl.read_manifest(out)["cat.npy"]["source"] == f"{npy_server.base_url}/cat.npy"


def test_drawings_this_downloader_did_not_write_are_never_replaced(npy_server: NpyServer, tmp_path: Path) -> None:
    """A colleague's 300-row cat.npy (no manifest entry), or 300 rows from another mirror, were
    silently replaced by the 10 rows asked for here."""
    npy_server.add_file("cat", 400, seed=9)
    npy_server.add_file("dog", 400, seed=8)
    out = tmp_path / "data"
    out.mkdir()
    theirs = dl.fixed_length_header(300, 128) + (bytes(range(256)) * 1000)[: 300 * 784]
    (out / "cat.npy").write_bytes(theirs)
    (out / "dog.npy").write_bytes(theirs)
    dl.record_files(out, [dl._entry("dog", out / "dog.npy", "https://mirror.example/dog.npy", 300, False)])
    report = fetch(npy_server, out, ["cat", "dog"], 10)
    assert sorted(report.failed) == ["cat", "dog"] and npy_server.records() == []
    errors = sorted(r.error for r in report.results)
    kept = "kept (move or delete it to download this class)"
    assert errors[0] == f"{out / 'cat.npy'} holds 300 drawings that manifest.json does not record; {kept}"
    assert errors[1].startswith(f"{out / 'dog.npy'} holds 300 drawings from https://mirror.example/dog.npy; kept")
    assert (out / "cat.npy").read_bytes() == theirs == (out / "dog.npy").read_bytes()
    (out / "cat.npy").write_bytes(theirs[:-100])  # a damaged file is replaced, as before
    assert fetch(npy_server, out, ["cat"], 10).failed == [] and len(np.load(out / "cat.npy")) == 10


def test_a_class_another_run_is_fetching_into_the_folder_is_left_to_it(npy_server: NpyServer, tmp_path: Path) -> None:
    """Two runs fetching one class shared its .part file: one renamed it while the other still wrote
    into it, leaving a cat.npy of 1,000 rows' bytes under a 200-row header (and a raw FileNotFoundError)."""
    from quickdraw_cnn.files import lock_file

    npy_server.add_file("cat", 400, seed=9)
    npy_server.add_file("dog", 400, seed=8)
    out = tmp_path / "data"
    out.mkdir()
    with lock_file(out / ".cat.npy.lock") as held:  # as the other run holds it while fetching cat
        assert held
        report = fetch(npy_server, out, ["cat", "dog"], 10)
        assert report.failed == ["cat"] and not (out / "cat.npy").exists() and len(np.load(out / "dog.npy")) == 10
        (cat,) = [r for r in report.results if r.name == "cat"]
        assert cat.error == f"another download of this class into {out} is running; rerun after it"
    assert fetch(npy_server, out, ["cat"], 10).failed == []
    assert sorted(p.name for p in out.iterdir()) == ["cat.npy", "dog.npy", "manifest.json"]  # no lock left


def test_a_disk_filling_up_mid_download_keeps_the_rows_fetched(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The .part was deleted with every row in it, and the message named no folder."""
    import errno

    rows = npy_server.add_file("cat", 2000, seed=2)
    out = tmp_path / "data"
    progress = dl._Fetcher._progress

    written = []

    def fill_up(self, n: int) -> None:
        progress(self, n)
        written.append(n)
        if sum(written) > 300_000:  # the disk fills up after ~380 rows
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl._Fetcher, "_progress", fill_up)
    (failed,) = fetch(npy_server, out, ["cat"], 1000).results
    assert failed.status == "failed" and failed.rows >= 300, failed
    assert failed.error == f"no space left in {out}; {failed.rows:,} rows kept in cat.npy.part, free some and rerun"
    monkeypatch.setattr(dl._Fetcher, "_progress", progress)
    sent = npy_server.bytes_sent("cat")
    assert fetch(npy_server, out, ["cat"], 1000).failed == []  # resumed from the rows kept
    np.testing.assert_array_equal(np.load(out / "cat.npy"), rows[:1000])
    assert npy_server.bytes_sent("cat") - sent <= (1000 - failed.rows) * 784 + dl.PROBE_BYTES  # and its header probe


def test_a_redirect_loop_or_an_empty_file_fails_that_class_at_once(npy_server: NpyServer, tmp_path: Path) -> None:
    """A redirect loop was retried for 31 s ("0 rows kept in dog.npy.part", no such file), and stopped
    the run as "cannot reach" when it came first; a 0-row file was a success that get_dataset.py refused."""
    npy_server.add_file("dog", 50)
    npy_server.add_file("line", 0)
    npy_server.add_file("cat", 50)
    npy_server.add_fault("dog", "redirect_loop", times=1000)
    report = fetch(npy_server, tmp_path / "data", ["dog", "line", "cat"], 10, retries=3)
    errors = {r.name: r.error for r in report.results}
    assert sorted(report.failed) == ["dog", "line"] and errors["cat"] is None
    assert errors["dog"] == f"redirect loop at {npy_server.base_url}/dog.npy"
    assert errors["line"] == f"{npy_server.base_url}/line.npy holds no drawings (0 rows)"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cat.npy", "manifest.json"]


def test_every_file_is_on_the_disk_before_it_takes_its_name(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing was fsynced: after a power cut a renamed class file or manifest could come back empty."""
    npy_server.add_file("cat", 50)
    synced: set[int] = set()
    renamed: list[tuple[str, bool]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        fsync(fd)

    def recording_replace(src, dst) -> None:
        renamed.append((Path(dst).name, os.stat(src).st_ino in synced))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 10).failed == []
    write_split(out, tmp_path / "split")  # the split's files, renamed in as one folder
    assert ("cat.npy", True) in renamed and ("manifest.json", True) in renamed
    assert all(was_synced for _, was_synced in renamed), renamed
    split = tmp_path / "split"
    assert all(p.stat().st_ino in synced for p in split.iterdir())


def test_disk_space_is_checked_before_any_request(
    npy_server: NpyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npy_server.add_file("cat", 300)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(dl.DownloadError, match="not enough disk space"):  # needs ~6 MB, 1 MB free
        fetch(npy_server, tmp_path / "data", ["cat", "dog"], 4000)
    assert npy_server.records() == [] and list((tmp_path / "data").iterdir()) == []


def _cli(*args: str, script: str = "download_subset.py") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize("fault", ["slow", "mute"])
def test_ctrl_c_while_the_server_stalls_exits_without_waiting_for_the_timeout(
    npy_server: NpyServer, tmp_path: Path, fault: str
) -> None:
    """The first Ctrl-C used to wait for a stalled read's --timeout (up to an hour) before acting.
    `mute`: a worker awaiting the server's first answer has no response whose socket Ctrl-C could shut,
    and the executor's shutdown, then Python's exit, waited for it."""
    npy_server.add_file("cat", 300)
    npy_server.add_fault("cat", fault, delay=60)
    out = tmp_path / "data"
    args = ["--categories", "cat", "--out", str(out), "--base-url", npy_server.base_url, "--timeout", "60"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "download_subset.py"), *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job ignores it
    )
    deadline = time.monotonic() + 30
    while not any(r.method == "GET" for r in npy_server.records("cat")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the answer or the body is awaited
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert time.monotonic() - sent < 20  # not the 60 s the request would have waited


def test_a_worker_answered_after_ctrl_c_leaves_the_files_to_the_next_run(npy_server: NpyServer, tmp_path: Path) -> None:
    """download() returns on Ctrl-C while a worker still awaits a silent server. When the answer came,
    that worker went on with the .part file, which a new download() into the same folder (a notebook
    cell run again) may be appending to by then: it cut the new rows off (a review found finished
    files with 56k-110k zero rows, and their checksums in the manifest)."""
    npy_server.add_file("cat", 3000)
    npy_server.add_fault("cat", "drop", after=80 + 1000 * 784)
    npy_server.add_fault("cat", "error500")  # the retry after the drop: give up, 1,000 rows kept
    out = tmp_path / "data"
    first = dl.download(["cat"], out, max_rows=3000, base_url=npy_server.base_url, retries=0, progress=False)
    part = out / "cat.npy.part"
    assert first.results[0].status == "failed" and part.stat().st_size == 80 + 1000 * 784

    npy_server.add_fault("cat", "slow", delay=0.0)  # the resume's probe of the header: answered
    npy_server.add_fault("cat", "mute", delay=1.0)  # the request for the missing rows: silent
    ctx = dl._Run(3000, retries=0, backoff=0.0, timeout=30.0)
    job = dl._plan(["cat"], out, npy_server.base_url, 3000)[0]

    def interrupted_then_taken_over() -> None:
        while not any(r.status == 0 for r in npy_server.records("cat")):
            time.sleep(0.01)
        ctx.interrupt()
        with open(part, "ab") as f:  # the next run appends rows meanwhile
            f.write(bytes(5 * 784))

    helper = threading.Thread(target=interrupted_then_taken_over)
    helper.start()
    result = dl._Fetcher(ctx, job, tqdm(disable=True)).run()
    helper.join()
    assert result.status == "failed" and "interrupted" in result.error
    assert part.stat().st_size == 80 + 1005 * 784  # untouched since the next run took over


def test_cli_downloads_in_parallel_and_names_every_failed_class(npy_server: NpyServer, tmp_path: Path) -> None:
    for i, name in enumerate(["cat", "alarm clock", "The Eiffel Tower", "dog"]):
        npy_server.add_file(name, 200 + i, seed=i)
    npy_server.add_fault("dog", "html", times=99)
    out = tmp_path / "data"
    common = ["--out", str(out), "--base-url", npy_server.base_url, "--max-per-class", "150"]
    cats = "cat, alarm clock,The Eiffel Tower,dog,ant"  # ant: not on the server (404)
    run = _cli("--categories", cats, "--workers", "4", "--retries", "1", "--backoff", "0.01", *common)
    assert run.returncode == 1, run.stderr
    assert "FAILED dog: server sent a text/html page" in run.stdout
    assert "FAILED ant: HTTP 404" in run.stdout
    assert "3 downloaded" in run.stdout
    for stem in ("cat", "alarm_clock", "The_Eiffel_Tower"):
        assert np.load(out / f"{stem}.npy").shape == (150, 784)
    assert not (out / "dog.npy").exists() and not (out / "ant.npy").exists()
    npy_server.reset()
    ok = _cli("--categories", "cat,alarm clock", *common, script="download_dataset.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 already complete" in ok.stdout and npy_server.records() == []
    names = tmp_path / "names.txt"
    names.write_text("# my classes\ncat\nThe Eiffel Tower\n")
    assert _cli("--categories", str(names), *common).returncode == 0


def test_cli_unknown_category_is_one_clear_line(tmp_path: Path) -> None:
    run = _cli("--categories", "cat,alarm clok", "--out", str(tmp_path / "data"))
    assert run.returncode == 2
    assert run.stderr.strip() == "error: unknown category 'alarm clok', did you mean 'alarm clock'?"
    assert not (tmp_path / "data").exists()


def test_cli_offline_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = _cli("--categories", "cat", "--base-url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "d"))
    assert run.returncode == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach 127.0.0.1" in lines[0] and "connection refused" in lines[0]
    assert list((tmp_path / "d").iterdir()) == []


def test_cli_synthetic_writes_the_same_layout_offline(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = _cli("--synthetic", "--max-per-class", "20", "--out", str(out), "--base-url", "http://127.0.0.1:9")
    assert run.returncode == 0, run.stderr
    files = sorted(out.glob("*.npy"))
    assert len(files) >= 3
    manifest = dl.read_manifest(out)
    for f in files:
        assert open_bitmaps(f).shape == (20, 784)
        assert manifest[f.name]["source"] == "synthetic" and manifest[f.name]["rows"] == 20
    json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(
    "args, option",
    [
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "1e300"], "--timeout"),
        (["--backoff", "-1"], "--backoff"),
        (["--backoff", "1e300"], "--backoff"),
        (["--workers", "0"], "--workers"),
        (["--workers", "100000000"], "--workers"),
        (["--retries", "-1"], "--retries"),
        (["--retries", "99999999999"], "--retries"),
        (["--base-url", "http://[::1"], "--base-url"),
        (["--base-url", "ftp://example.org/x"], "--base-url"),
        (["--synthetic", "--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_numbers_and_urls_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], option: str
) -> None:
    run = _cli("--categories", "cat", "--out", str(tmp_path / "d"), *args)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"argument {option}" in run.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "d").exists()


def test_cli_out_that_cannot_be_a_folder_is_one_clear_line(npy_server: NpyServer, tmp_path: Path) -> None:
    npy_server.add_file("cat", 50)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args in (["--categories", "cat", "--base-url", npy_server.base_url], ["--categories", "line", "--synthetic"]):
        run = _cli("--out", str(a_file), "--max-per-class", "10", *args)
        assert run.returncode == 3 and "Traceback" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and str(a_file) in run.stderr
    assert a_file.read_text() == "x"


def test_another_tools_manifest_is_one_line_and_left_alone(npy_server: NpyServer, tmp_path: Path) -> None:
    """A manifest.json of another format was an AttributeError traceback (and would have been rewritten)."""
    npy_server.add_file("cat", 50)
    out = tmp_path / "d"
    out.mkdir()
    for theirs in ("[]", '"x"', '{"files": []}', "{not json"):
        (out / "manifest.json").write_text(theirs)
        for args in (
            ["--categories", "cat", "--base-url", npy_server.base_url],
            ["--categories", "line", "--synthetic"],
        ):
            run = _cli("--out", str(out), "--max-per-class", "10", *args)
            assert run.returncode == 3 and "Traceback" not in run.stderr, run.stderr
            assert run.stderr.strip().splitlines()[-1].startswith(f"error: {out / 'manifest.json'}: "), run.stderr
            assert (out / "manifest.json").read_text() == theirs and not (out / "cat.npy").exists()
    (out / "manifest.json").write_text('{"files": {"cat.npy": "x"}}')  # an entry that is no record: unrecorded
    assert fetch(npy_server, out, ["cat"], 10).failed == []
    assert dl.read_manifest(out)["cat.npy"]["rows"] == 10


def test_synthetic_never_replaces_downloaded_drawings(npy_server: NpyServer, tmp_path: Path) -> None:
    """make demo fell back to --synthetic after any failed class, overwriting the real ones downloaded.
    --synthetic keeps real drawings (downloaded, or of unknown origin) and writes only the other classes."""
    npy_server.add_file("circle", 50)
    out = tmp_path / "demo"
    run = _cli(
        "--categories", "circle,square", "--max-per-class", "10", "--out", str(out), "--base-url", npy_server.base_url
    )
    assert run.returncode == 1  # square is not on the server
    real = (out / "circle.npy").read_bytes()
    shutil.copy(out / "circle.npy", out / "star.npy")  # a file the manifest does not know
    run = _cli("--synthetic", "--categories", "circle,square,star,line", "--max-per-class", "10", "--out", str(out))
    assert run.returncode == 0 and "kept the drawings already in" in run.stderr and "circle, star" in run.stderr
    assert (out / "circle.npy").read_bytes() == real and (out / "star.npy").read_bytes() == real
    manifest = dl.read_manifest(out)
    assert manifest["circle.npy"]["source"] != "synthetic" and "star.npy" not in manifest
    assert manifest["square.npy"]["source"] == manifest["line.npy"]["source"] == "synthetic"
    run = _cli("--synthetic", "--categories", "square", "--max-per-class", "20", "--out", str(out))
    assert run.returncode == 0 and dl.read_manifest(out)["square.npy"]["rows"] == 20  # doodles may be remade


def test_cli_synthetic_rows(tmp_path: Path) -> None:
    """--synthetic takes --max-per-class however it is spelled, and refuses what it cannot write."""
    run = _cli("--synthetic", "--categories", "line", "--max", "5", "--out", str(tmp_path / "a"))
    assert run.returncode == 0, run.stderr
    assert open_bitmaps(tmp_path / "a" / "line.npy").shape == (5, 784)
    run = _cli("--synthetic", "--categories", "line", "--out", str(tmp_path / "b"))
    assert run.returncode == 0 and open_bitmaps(tmp_path / "b" / "line.npy").shape == (2000, 784)
    for rows in ("all", "0", "100000000000"):
        run = _cli("--synthetic", "--categories", "line", "--max-per-class", rows, "--out", str(tmp_path / "c"))
        assert run.returncode == 2 and run.stderr.strip() == "error: --synthetic writes 1 to 200,000 drawings per class"
    run = _cli("--synthetic", "--categories", "line,cat", "--out", str(tmp_path / "c"))
    assert run.returncode == 2 and "no synthetic generator for category 'cat'" in run.stderr
    assert not (tmp_path / "c").exists()


def test_synthetic_on_a_full_disk_keeps_what_it_wrote_on_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "data"
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    assert dl.main(["--synthetic", "--categories", "line,star", "--out", str(out)]) == dl.EXIT_CANNOT_START
    assert "not enough disk space" in capsys.readouterr().err and list(out.iterdir()) == []
    monkeypatch.undo()
    real_replace = os.replace

    def full_after_first(src: object, dst: object) -> None:  # the second class's file hits a full disk
        if str(dst).endswith("star.npy"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("quickdraw_cnn.npy_format.os.replace", full_after_first)
    assert dl.main(["--synthetic", "--categories", "line,star", "--out", str(out)]) == dl.EXIT_CANNOT_START
    err = capsys.readouterr().err.strip()
    assert err.endswith("(1 of 2 classes written): No space left on device"), err
    assert sorted(p.name for p in out.iterdir()) == ["line.npy", "manifest.json"]  # no star.npy.part left
    assert list(dl.read_manifest(out)) == ["line.npy"]


def test_unknown_dtype_on_the_server_fails_that_class_only(npy_server: NpyServer, tmp_path: Path) -> None:
    npy_server.add_file("cat", 100)
    body = repr({"descr": "xyz", "fortran_order": False, "shape": (100, 784)}).encode("latin1")
    body += b" " * (-(10 + len(body) + 1) % 64) + b"\n"
    header = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
    (npy_server.root / "dog.npy").write_bytes(header + bytes(100 * 784))
    report = fetch(npy_server, tmp_path / "data", ["cat", "dog"], 50)
    assert report.failed == ["dog"] and "unknown dtype 'xyz'" in report.results[1].error
    assert np.load(tmp_path / "data" / "cat.npy").shape == (50, 784)


def test_extending_to_an_absurd_row_count_gives_the_whole_file(npy_server: NpyServer, tmp_path: Path) -> None:
    npy_server.add_file("cat", 300)
    out = tmp_path / "data"
    assert fetch(npy_server, out, ["cat"], 10).failed == []
    assert fetch(npy_server, out, ["cat"], 10**20).failed == []
    assert (out / "cat.npy").read_bytes() == (npy_server.root / "cat.npy").read_bytes()


def test_two_runs_into_one_folder_keep_every_manifest_entry(tmp_path: Path) -> None:
    """Each run rewrites the manifest from what it read: without a lock across processes, entries get lost."""
    out = tmp_path / "data"
    out.mkdir()
    go = tmp_path / "go"
    code = (
        "import sys, time; from pathlib import Path; from quickdraw_cnn import download as dl\n"
        "out, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])\n"
        "while not go.exists():\n"  # all start together, once each has imported
        "    time.sleep(0.001)\n"
        "for i in range(100):\n"
        "    dl.record_files(out, [{'file': f'{tag}{i}.npy', 'rows': i}])\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", code, str(out), tag, str(go)], cwd=ROOT, stderr=subprocess.PIPE)
        for tag in ("a", "b", "c")
    ]
    time.sleep(2)  # the imports
    go.touch()
    assert all(run.wait(timeout=60) == 0 for run in runs), [run.stderr.read() for run in runs]
    assert len(dl.read_manifest(out)) == 300
