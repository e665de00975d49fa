"""Fetch QuickDraw `numpy_bitmap` files: the first N drawings by HTTP Range, or whole verified files.

Why Range: a `.npy` file is a small header followed by contiguous 784-byte rows, so the first N drawings
of a class are its first `header_len + N*784` bytes. Labs 21 pulled ~100 MB per class to use 3 MB.

Guarantees (what the tests prove):
- a file `<out>/<stem>.npy` only ever appears complete and validated: data goes to `<stem>.npy.part`
  (whose header already claims the target row count, so an unfinished part never loads) and is renamed
  into place once done; HTML pages, 404s, short bodies and corrupt headers leave no loadable file;
- an interrupted transfer resumes from the last complete row (the `.part` file and a small
  `.part.json` note of where it came from are kept between runs);
- asking for more rows later fetches only the missing byte range and rewrites the header;
- whole files are checked against the pinned size and SHA-256 of `quickdraw_cnn/lists/numpy_bitmap_manifest.tsv`;
- `<out>/manifest.json` records each file's source URL, rows, bytes, SHA-256 and whether it is whole.

This module must not import TensorFlow: the download scripts start in a second.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import queue
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
import urllib3
from tqdm import tqdm

from quickdraw_cnn import categories as cat
from quickdraw_cnn.cli import (
    ArgumentParser,
    at_most,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from quickdraw_cnn.files import lock_file, lock_folder, sync_file, write_text_atomic
from quickdraw_cnn.npy_format import ROW_BYTES, NpyFormatError, parse_header, read_header

DEFAULT_SUBSET_ROWS = 4000  # what Labs 21 trained on: 100 classes x 4,000 drawings (~314 MB)
DEFAULT_DATASET_ROWS = 10000  # 345 classes x 10,000 drawings = 2.7 GB instead of ~39.5 GB whole
GUESS_HEADER = 128  # header length assumed for files the pinned manifest does not know
PROBE_BYTES = 1024  # enough for any header numpy writes for a 2-D uint8 array
CHUNK = 256 * 1024
DISK_MARGIN = 64 * 1024 * 1024
MANIFEST_NAME = "manifest.json"
EXIT_FAILED, EXIT_USAGE, EXIT_CANNOT_START, EXIT_INTERRUPTED = 1, 2, 3, 130
MAX_WORKERS = 64  # each is a thread with its own connection and progress bar
INTERRUPT_GRACE = 2.0  # s: how long Ctrl-C waits for the workers it woke to leave their files whole
MAX_SECONDS = 3600.0  # for --timeout and --backoff: beyond an hour is a typo, and the OS refuses ~1e9
MAX_WAIT = 60.0  # the longest wait between retries that doubling reaches (a longer --backoff is kept)
MAX_RETRIES = 1000
MAX_SYNTHETIC_ROWS = 200_000  # one class is generated in memory (784 bytes a drawing): 157 MB at most


class DownloadError(RuntimeError):
    """The run cannot start at all (server unreachable, disk full); the message is one line."""


class _Retryable(Exception):
    """A transfer failure worth retrying: timeout, reset, 5xx, short body."""


class _Permanent(Exception):
    """A failure retrying will not fix: 404, HTML page, corrupt header, checksum mismatch."""


class _GaveUp(Exception):
    """Retries exhausted on a retryable failure: the `.part` file is kept for the next run."""


@dataclass(frozen=True)
class _Remote:
    """What the first bytes of a remote file told us."""

    header: bytes
    rows: int
    total: int  # remote file size in bytes

    @property
    def header_len(self) -> int:
        return len(self.header)


@dataclass
class ClassResult:
    """Outcome for one class: `status` is "downloaded", "skipped" (already complete) or "failed"."""

    name: str
    path: Path
    status: str
    rows: int = 0
    fetched: int = 0
    error: str | None = None


@dataclass
class DownloadReport:
    """Per-class results of a run; `failed` names every class that is not complete."""

    results: list[ClassResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if r.status == "failed"]

    @property
    def fetched(self) -> int:
        return sum(r.fetched for r in self.results)

    def summary(self) -> str:
        done = [r for r in self.results if r.status == "downloaded"]
        skipped = [r for r in self.results if r.status == "skipped"]
        lines = [
            f"{len(self.results)} classes: {len(done)} downloaded, {len(skipped)} already complete, "
            f"{len(self.failed)} failed; {_human(self.fetched)} fetched in {self.seconds:.1f} s"
        ]
        lines += [f"FAILED {r.name}: {r.error}" for r in self.results if r.status == "failed"]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- helpers


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def url_for(base_url: str, name: str) -> str:
    """`<base-url>/<URL-encoded name>.npy` (spaces become %20, as the bucket expects)."""
    return f"{base_url.rstrip('/')}/{quote(name)}.npy"


def fixed_length_header(rows: int, length: int) -> bytes:
    """A v1.0 `.npy` header for uint8 (rows, 784) padded to exactly `length` bytes.

    Keeping a file's header length fixed lets a partial file grow by appending rows and rewriting only
    the header in place; with the official 80-byte header the file stays byte-identical to the remote.
    """
    body = repr({"descr": "|u1", "fortran_order": False, "shape": (rows, ROW_BYTES)}).encode("latin1")
    pad = length - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"a header for {rows} rows does not fit in {length} bytes")
    body += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short_reason(exc: BaseException) -> str:
    """One readable phrase for a requests/urllib3 error (their messages span several lines)."""
    text = str(exc)
    for pattern, phrase in (
        (r"Connection refused", "connection refused"),
        (r"Name or service not known|nodename nor servname|NameResolution|getaddrinfo", "host not found"),
        (r"Network is unreachable", "network unreachable"),
        (r"timed out|Timeout", "timed out"),
        (r"Connection reset|ConnectionResetError", "connection reset"),
        (r"IncompleteRead|Connection broken|ProtocolError", "connection broken mid-transfer"),
    ):
        if re.search(pattern, text):
            return phrase
    return type(exc).__name__


# ------------------------------------------------------------------------------------ data/manifest.json

_manifest_lock = threading.Lock()


def read_manifest(out_dir: Path) -> dict[str, dict]:
    """Entries of `<out>/manifest.json` keyed by file name; empty when there is none.

    Raises DownloadError for a manifest.json that is not this downloader's (another tool's, in a folder
    given as --out): rewriting it would destroy it. Entries that are not records count as unrecorded."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc}); move it away") from None
    files = data.get("files", {}) if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise DownloadError(f'{path}: not this downloader\'s manifest (no "files" record); move it away')
    return {name: entry for name, entry in files.items() if isinstance(entry, dict)}


@contextlib.contextmanager
def _manifest_locked(out_dir: Path) -> Iterator[None]:
    """Held while the manifest is read, changed and written: by this process's threads, and by other
    runs into the same folder (an advisory lock on the folder itself, where the OS has flock)."""
    with _manifest_lock:
        fd = lock_folder(out_dir)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock


def record_files(out_dir: Path, entries: Sequence[dict]) -> None:
    """Add or replace entries in `<out>/manifest.json`, written atomically (temp file + rename)."""
    out_dir = Path(out_dir)
    with _manifest_locked(out_dir):
        files = read_manifest(out_dir)
        for entry in entries:
            files[entry["file"]] = entry
        doc = {
            "about": "What each .npy file here is; written by quickdraw_cnn.download",
            "files": dict(sorted(files.items())),
        }
        write_text_atomic(out_dir / MANIFEST_NAME, json.dumps(doc, indent=1) + "\n")


def _entry(name: str, path: Path, source: str, rows: int, complete: bool, **extra: object) -> dict:
    return {
        "name": name,
        "file": path.name,
        "source": source,
        "rows": rows,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "complete": complete,
        **extra,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------- planning


@dataclass
class _Job:
    name: str
    url: str
    path: Path
    have: int = 0  # rows of a trusted local file (same source, matches its manifest entry)
    skip: bool = False
    plan_bytes: int = 0  # bytes expected to fetch (estimate from the pinned manifest)
    target_bytes: int | None = None  # size of the finished file, when known
    kept: str | None = None  # why a local file this run cannot vouch for is left alone (the class fails)


def _trusted_rows(path: Path, entry: dict | None, url: str) -> tuple[int, bool] | None:
    """(rows, whole) of a local file this downloader wrote from `url` and that still matches its record."""
    if entry is None or entry.get("source") != url or not path.exists():
        return None
    try:
        rows, _ = read_header(path)
    except (OSError, NpyFormatError):
        return None
    if rows != entry.get("rows") or path.stat().st_size != entry.get("bytes"):
        return None
    return rows, bool(entry.get("complete"))


def _foreign_rows(path: Path, entry: dict | None) -> str | None:
    """Why a whole, readable class file that this run did not write must not be replaced: drawings
    from elsewhere (a colleague's, another mirror's, more rows than asked) would be lost. Made-up
    doodles (--synthetic) and damaged files are replaced."""
    if (entry or {}).get("source") == "synthetic" or not path.exists():
        return None
    try:
        rows, header_len = read_header(path)
        if path.stat().st_size != header_len + rows * ROW_BYTES:
            return None
    except (OSError, NpyFormatError):
        return None
    if entry is None:
        origin = "that manifest.json does not record"
    elif entry.get("rows") != rows or entry.get("bytes") != path.stat().st_size:
        origin = "changed since manifest.json recorded it"
    else:
        origin = f"from {entry.get('source')}"
    return f"{path} holds {rows:,} drawings {origin}; kept (move or delete it to download this class)"


def _plan(names: Sequence[str], out_dir: Path, base_url: str, max_rows: int | None) -> list[_Job]:
    """Decide per class what is already there and how many bytes remain, before any network traffic."""
    pinned = cat.manifest()
    local = read_manifest(out_dir)
    jobs = []
    for name in names:
        path = out_dir / f"{cat.file_stem(name)}.npy"
        url = url_for(base_url, name)
        job = _Job(name, url, path)
        remote = pinned.get(name)
        trusted = _trusted_rows(path, local.get(path.name), url)
        if (
            trusted is None
            and remote is not None
            and path.exists()
            and path.stat().st_size == remote.bytes
            and sha256_file(path) == remote.sha256
        ):  # an official whole file already there (e.g. from Labs 21): adopt it, don't refetch
            record_files(out_dir, [_entry(name, path, url, remote.rows, True, pinned_sha256_ok=True)])
            trusted = (remote.rows, True)
        elif trusted is not None and max_rows is None and remote is not None and trusted[1]:
            # whole, but fetched as "the first N rows" (N >= all): verified only now that whole files are asked for
            entry = local.get(path.name, {})
            if not entry.get("pinned_sha256_ok"):
                if entry.get("bytes") == remote.bytes and entry.get("sha256") == remote.sha256 == sha256_file(path):
                    record_files(out_dir, [{**entry, "pinned_sha256_ok": True}])
                else:
                    trusted = None  # fetched again whole, and checked
        if trusted is not None:
            job.have = trusted[0]
            job.skip = trusted[1] or (max_rows is not None and trusted[0] >= max_rows)
        elif max_rows is not None or remote is None:  # a whole pinned file is refetched only when it is wrong
            job.kept = _foreign_rows(path, local.get(path.name))
        if remote is not None:
            header = remote.bytes - remote.rows * ROW_BYTES
            rows = remote.rows if max_rows is None else min(max_rows, remote.rows)
            job.target_bytes = header + rows * ROW_BYTES
        elif max_rows is not None:
            job.target_bytes = GUESS_HEADER + max_rows * ROW_BYTES
        if not job.skip and job.target_bytes is not None:
            job.plan_bytes = max(0, job.target_bytes - (job.have * ROW_BYTES + (GUESS_HEADER if job.have else 0)))
        jobs.append(job)
    return jobs


def check_disk_space(out_dir: Path, need: int) -> None:
    """Refuse to start when `need` bytes of finished files would not fit (with a margin)."""
    if need == 0:
        return
    free = shutil.disk_usage(out_dir).free
    if need + DISK_MARGIN > free:
        raise DownloadError(
            f"not enough disk space in {out_dir}: need {_human(need)} (+{_human(DISK_MARGIN)} margin), "
            f"{_human(free)} free; use a smaller --max-per-class or another --out"
        )


def _bad_header(exc: NpyFormatError) -> str:
    """The remote file's header problem, said once ("corrupt .npy header: corrupt .npy header" before)."""
    return str(exc) if "header" in str(exc) else f"bad .npy header: {exc}"


def check_reachable(session: requests.Session, url: str, timeout: float) -> None:
    """One quick HEAD so that an offline run fails in one line instead of retrying every class."""
    try:
        session.head(url, timeout=(min(timeout, 10.0), timeout), allow_redirects=True).close()
    except requests.TooManyRedirects:
        return  # reached, and answering: the class itself fails, named, with the others still fetched
    except requests.RequestException as exc:
        host = urlsplit(url).netloc or url
        raise DownloadError(
            f"cannot reach {host} ({_short_reason(exc)}): offline or wrong --base-url? (--synthetic works offline)"
        ) from None


# ------------------------------------------------------------------------------------------- transfer


class _Fetcher:
    """Downloads one class into `<stem>.npy.part`, then validates and renames it; see module docstring."""

    def __init__(self, ctx: _Run, job: _Job, bar: tqdm) -> None:
        self.ctx, self.job, self.bar = ctx, job, bar
        self.part = job.path.with_name(job.path.name + ".part")
        self.note = job.path.with_name(job.path.name + ".part.json")
        self.remote: _Remote | None = None
        self.header_len = 0  # local header length of the .part file
        self.body = 0  # data bytes in the .part file after its header (cut to whole rows after errors)
        self.fetched = 0  # body bytes received, whatever became of them
        self.expected_total: int | None = None  # remote size recorded when the part was started

    # -- state of the .part file

    def _target(self) -> int:
        assert self.remote is not None
        m = self.ctx.max_rows
        return self.remote.rows if m is None else min(m, self.remote.rows)

    def _discard(self) -> None:
        for p in (self.part, self.note):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.body = self.header_len = 0
        self.expected_total = None

    def _resume_state(self) -> None:
        """Pick up a `.part` left by an interrupted run (same source only), or extend a trusted file."""
        try:
            note = json.loads(self.note.read_text(encoding="utf-8")) if self.note.exists() else None
        except (OSError, ValueError):
            note = None
        if self.part.exists() and isinstance(note, dict) and note.get("source") == self.job.url:
            try:
                with open(self.part, "rb") as f:
                    _, self.header_len = parse_header(f.read(PROBE_BYTES))
                self.body = max(0, self.part.stat().st_size - self.header_len) // ROW_BYTES * ROW_BYTES
                self.expected_total = note.get("remote_bytes")
                self._truncate()  # drop a torn last row
                return
            except (OSError, NpyFormatError):
                pass
        self._discard()
        if self.job.have > 0:  # extend a trusted file: copy it, then append the missing rows
            entry = read_manifest(self.job.path.parent).get(self.job.path.name, {})
            shutil.copyfile(self.job.path, self.part)
            _, self.header_len = read_header(self.part)
            self.body = self.job.have * ROW_BYTES
            self.expected_total = entry.get("remote_bytes")
            self._write_note(self.expected_total)
            remote_rows = entry.get("remote_rows")
            claim = min(filter(None, (self.ctx.max_rows, remote_rows)), default=0)
            self._set_part_header(max(claim, self.have + 1))  # never loadable until finished

    def _write_note(self, remote_bytes: int | None) -> None:
        self.note.write_text(json.dumps({"source": self.job.url, "remote_bytes": remote_bytes}), "utf-8")

    def _set_part_header(self, rows: int) -> None:
        """The part's header always claims the target rows, so an unfinished part never loads."""
        with open(self.part, "r+b") as f:
            f.write(fixed_length_header(rows, self.header_len))

    @property
    def have(self) -> int:
        """Complete rows in the `.part` file."""
        return self.body // ROW_BYTES

    def _cut_to_rows(self) -> None:
        """After a failed transfer keep only complete rows: resume starts from the last complete row."""
        self.body = self.have * ROW_BYTES
        self._truncate()

    def _truncate(self) -> None:
        with open(self.part, "r+b") as f:
            f.truncate(self.header_len + self.body)

    def _progress(self, n: int) -> None:
        self.bar.update(n)
        self.ctx.overall_update(n)

    # -- HTTP

    def _get(self, start: int, end: int | None) -> requests.Response:
        """GET bytes [start, end] (end None: to the end of the file), with the status checks."""
        ranged = start > 0 or end is not None
        headers = {"Range": f"bytes={start}-{'' if end is None else end}"} if ranged else {}
        try:
            r = self.ctx.session().get(self.job.url, headers=headers, stream=True, timeout=self.ctx.timeouts)
        except requests.TooManyRedirects:
            raise _Permanent(f"redirect loop at {self.job.url}") from None
        except requests.RequestException as exc:
            raise _Retryable(_short_reason(exc)) from None
        if self.ctx.stop.is_set():  # answered after Ctrl-C: download() has returned, a new run may own the files
            r.close()
            raise _GaveUp("interrupted")
        if r.status_code in (408, 429) or r.status_code >= 500:
            r.close()
            raise _Retryable(f"HTTP {r.status_code} {r.reason}")
        if r.status_code == 416:
            r.close()
            raise _Permanent("HTTP 416: the remote file is shorter than expected")
        if r.status_code not in (200, 206):
            r.close()
            raise _Permanent(f"HTTP {r.status_code} {r.reason} for {self.job.url}")
        ctype = r.headers.get("Content-Type", "")
        if ctype.startswith("text/"):
            r.close()
            raise _Permanent(f"server sent a {ctype.split(';')[0]} page, not a .npy file")
        return r

    def _check_lengths(self, r: requests.Response, start: int, end: int | None) -> int | None:
        """Check Content-Range/Content-Length agree with what was asked; return the remote size if told."""
        length = r.headers.get("Content-Length")
        if r.status_code == 200:  # the whole file from byte 0 (no Range asked, or the server ignored it)
            return int(length) if length is not None else None
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)$", r.headers.get("Content-Range", "").strip())
        if not m:
            r.close()
            raise _Retryable("206 response without a valid Content-Range")
        first, last = int(m.group(1)), int(m.group(2))
        total = None if m.group(3) == "*" else int(m.group(3))
        if first != start or (end is not None and last > end) or last < first:
            r.close()
            raise _Retryable(f"Content-Range {first}-{last} does not match the requested {start}-{end}")
        if length is not None and int(length) != last - first + 1:
            r.close()
            raise _Retryable(f"Content-Length {length} disagrees with Content-Range {first}-{last}")
        return total

    def _stream(self, r: requests.Response, sink: Callable[[bytes], bool]) -> None:
        """Feed the body to sink as it arrives until sink returns False or the body ends.

        Reads with `read1` so that the bytes received before a dropped connection are kept (requests'
        iter_content would lose a partly filled chunk). Network errors become retryable; disk errors not.
        """
        read = getattr(r.raw, "read1", None) or r.raw.read
        try:
            with self.ctx.reading(r):
                while True:
                    if self.ctx.stop.is_set():
                        raise _Retryable("interrupted")
                    try:
                        chunk = read(CHUNK)
                    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                        if self.ctx.stop.is_set():
                            raise _Retryable("interrupted") from None
                        raise _Retryable(_short_reason(exc)) from None
                    if self.ctx.stop.is_set():  # also after a read cut short by `interrupt`
                        raise _Retryable("interrupted")
                    if not chunk:
                        break
                    self.fetched += len(chunk)
                    if not sink(chunk):
                        break
        finally:
            r.close()  # also stops a server that sends more than asked

    # -- the three kinds of request

    def _fresh(self) -> None:
        """First request: header + target rows in one go; the header is parsed from the first bytes."""
        guess = self.ctx.header_guess(self.job.name)
        m = self.ctx.max_rows
        end = None if m is None else guess + m * ROW_BYTES - 1
        r = self._get(0, end)
        total = self._check_lengths(r, 0, end)
        buf = bytearray()
        out = None
        written = 0

        def sink(chunk: bytes) -> bool:
            nonlocal out, written
            if out is None:
                buf.extend(chunk)
                if len(buf) < 12:
                    return True
                if not buf.startswith(b"\x93NUMPY"):
                    raise _Permanent("not a .npy file (corrupt or missing header)")
                if buf[6] == 1:
                    need = 10 + int.from_bytes(buf[8:10], "little")
                else:
                    need = 12 + int.from_bytes(buf[8:12], "little")
                if len(buf) < need:
                    return True
                try:
                    rows, hlen = parse_header(bytes(buf[:need]))
                except NpyFormatError as exc:
                    raise _Permanent(_bad_header(exc)) from None
                size = hlen + rows * ROW_BYTES
                if total is not None and total != size:
                    raise _Permanent(f"header says {rows} rows ({size} bytes) but the server has {total} bytes")
                self.remote = _Remote(bytes(buf[:hlen]), rows, size)
                self.header_len, self.expected_total = hlen, size
                self._write_note(size)
                out = open(self.part, "wb")  # noqa: SIM115 - closed below
                out.write(fixed_length_header(self._target(), hlen))
                chunk = bytes(buf[hlen:])
                self._bar_total()
            chunk = chunk[: self._target() * ROW_BYTES - written]
            out.write(chunk)
            written += len(chunk)
            self._progress(len(chunk))
            return written < self._target() * ROW_BYTES

        try:
            self._stream(r, sink)
            if out is None:
                raise _Permanent("body ended before the .npy header was complete")
        except BaseException:
            if out is not None:
                out.close()
                self.body = written
                self._cut_to_rows()
            raise
        out.close()
        self.body = written  # a clean end keeps a torn last row: the next range starts mid-row

    def _probe(self) -> _Remote:
        """Small ranged GET of the remote header, for resumes and extensions."""
        for size in (PROBE_BYTES, 65536 + 12):
            r = self._get(0, size - 1)
            total = self._check_lengths(r, 0, size - 1)
            data = bytearray()

            def sink(chunk: bytes, data: bytearray = data, size: int = size) -> bool:
                data.extend(chunk)
                return len(data) < size

            self._stream(r, sink)
            try:
                rows, hlen = parse_header(bytes(data))
            except NpyFormatError as exc:
                if "truncated" in str(exc) and len(data) >= size:
                    continue
                raise _Permanent(_bad_header(exc)) from None
            if total is not None and total != hlen + rows * ROW_BYTES:
                raise _Permanent(f"header says {rows} rows but the server has {total} bytes")
            return _Remote(bytes(data[:hlen]), rows, hlen + rows * ROW_BYTES)
        raise _Permanent("corrupt .npy header (too long)")

    def _continue(self) -> None:
        """Ranged GET of the rows still missing, appended to the `.part` file."""
        assert self.remote is not None
        start = self.remote.header_len + self.body
        end = self.remote.header_len + self._target() * ROW_BYTES - 1
        r = self._get(start, end)
        total = self._check_lengths(r, start, end)
        if total is not None and total != self.remote.total:
            r.close()
            raise _Permanent(f"the remote file changed size ({self.remote.total} -> {total} bytes)")
        skip = start if r.status_code == 200 else 0  # a server ignoring Range sends the whole file
        remaining = end - start + 1
        self._bar_total()
        with open(self.part, "r+b") as out:
            out.seek(self.header_len + self.body)
            written = 0

            def sink(chunk: bytes) -> bool:
                nonlocal skip, remaining, written
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                chunk = chunk[:remaining]
                out.write(chunk)
                written += len(chunk)
                remaining -= len(chunk)
                self._progress(len(chunk))
                return remaining > 0

            try:
                self._stream(r, sink)
            except BaseException:
                self.body += written
                out.truncate(self.header_len + self.have * ROW_BYTES)
                self.body = self.have * ROW_BYTES
                raise
            self.body += written

    def _bar_total(self) -> None:
        self.bar.total = self._target() * ROW_BYTES - self.body
        self.bar.refresh()

    # -- driver

    def run(self) -> ClassResult:
        """Fetch under the class's lock (another run fetching it into this folder would share the
        .part file: each renamed a file the other was still writing); never raises."""
        with lock_file(self.job.path.with_name(f".{self.job.path.name}.lock"), wait=False) as ours:
            if not ours:
                msg = f"another download of this class into {self.job.path.parent} is running; rerun after it"
                return ClassResult(self.job.name, self.job.path, "failed", error=msg)
            return self._run()

    def _run(self) -> ClassResult:
        """Fetch with retries and backoff (reset whenever a try made progress)."""
        job, ctx = self.job, self.ctx
        try:
            self._resume_state()
            failures = 0
            while True:
                before = (self.body, self.remote)
                try:
                    if self.remote is None and self.body > 0:
                        self.remote = self._probe()
                        if self.expected_total is not None and self.remote.total != self.expected_total:
                            self._discard()  # the remote changed since the part was started: start over
                        elif ctx.max_rows is None and self.header_len != self.remote.header_len:
                            self._discard()  # a whole file must end byte-identical to the remote
                        else:
                            self.body = min(self.body, self._target() * ROW_BYTES)
                            self._truncate()
                            self._set_part_header(self._target())
                    if self.remote is None or (self.body == 0 and not self.part.exists()):
                        self._fresh()
                    if self.body < self._target() * ROW_BYTES:
                        self._continue()
                    if self.body >= self._target() * ROW_BYTES:
                        break
                    raise _Retryable("short body")
                except _Retryable as exc:
                    if ctx.stop.is_set():
                        raise _GaveUp("interrupted") from None
                    progressed = (self.body, self.remote) != before
                    failures = 0 if progressed else failures + 1
                    if failures > ctx.retries:
                        raise _GaveUp(f"{exc} (gave up after {ctx.retries} retries)") from None
                    if failures:  # doubling, up to MAX_WAIT: 20 retries were 291 hours of waiting
                        time.sleep(min(ctx.backoff * 2 ** (failures - 1), max(ctx.backoff, MAX_WAIT)))
            return self._finish()
        except _GaveUp as exc:
            kept = f"{self.have:,} rows kept in {self.part.name}, rerun to resume" if self.have else "rerun to retry"
            msg = f"{exc}; {kept}"
            return ClassResult(job.name, job.path, "failed", self.have, self.fetched, msg)
        except _Permanent as exc:
            self._discard()
            return ClassResult(job.name, job.path, "failed", 0, self.fetched, str(exc))
        except (OSError, ValueError) as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC and self.part.exists():  # keep the rows: they resume
                with contextlib.suppress(OSError):  # what reached the disk, in whole rows (never extended)
                    on_disk = self.part.stat().st_size - self.header_len
                    self.body = max(0, min(self.body, on_disk)) // ROW_BYTES * ROW_BYTES
                    self._truncate()
                    msg = f"no space left in {job.path.parent}; {self.have:,} rows kept in {self.part.name}, "
                    return ClassResult(
                        job.name, job.path, "failed", self.have, self.fetched, msg + "free some and rerun"
                    )
            self._discard()
            return ClassResult(job.name, job.path, "failed", 0, self.fetched, f"{type(exc).__name__}: {exc}")

    def _finish(self) -> ClassResult:
        """Rewrite the header, validate size and checksum, rename into place, record in manifest.json."""
        assert self.remote is not None
        job, rows = self.job, self._target()
        whole = rows == self.remote.rows
        if whole and self.header_len == self.remote.header_len:
            with open(self.part, "r+b") as f:
                f.write(self.remote.header)  # byte-identical to the remote file
        else:
            self._set_part_header(rows)
        try:
            got_rows, _ = read_header(self.part)
        except NpyFormatError as exc:
            raise _Permanent(str(exc)) from None
        if got_rows != rows:
            raise _Permanent(f"finished file has {got_rows} rows, expected {rows}")
        if rows == 0:
            raise _Permanent(f"{job.url} holds no drawings (0 rows)")
        pinned = cat.manifest().get(job.name)
        entry = _entry(
            job.name, self.part, job.url, rows, whole, remote_rows=self.remote.rows, remote_bytes=self.remote.total
        )
        if self.ctx.max_rows is None and pinned is not None:
            if entry["bytes"] != pinned.bytes or entry["sha256"] != pinned.sha256:
                raise _Permanent(
                    f"checksum mismatch: got {entry['bytes']} bytes, sha256 {entry['sha256'][:12]}...; "
                    f"pinned {pinned.bytes} bytes, sha256 {pinned.sha256[:12]}..."
                )
            entry["pinned_sha256_ok"] = True
        entry["file"] = job.path.name
        sync_file(self.part)  # on the disk before its final name: a power cut could empty a renamed file
        os.replace(self.part, job.path)
        with contextlib.suppress(FileNotFoundError):
            self.note.unlink()
        record_files(job.path.parent, [entry])
        return ClassResult(job.name, job.path, "downloaded", rows, self.fetched)


@dataclass
class _Run:
    """Settings and shared state of one download run (sessions are per thread: requests is not thread-safe)."""

    max_rows: int | None
    retries: int
    backoff: float
    timeout: float
    overall: tqdm | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reading: set = field(default_factory=set)  # responses whose bodies are being read now

    @contextlib.contextmanager
    def reading(self, r: requests.Response):
        with self._lock:
            self._reading.add(r)
        try:
            yield
        finally:
            with self._lock:
                self._reading.discard(r)

    def interrupt(self) -> None:
        """Stop every worker now (Ctrl-C): a read stalled on a silent server would otherwise hold the
        exit for up to --timeout. Shutting its socket down wakes it; what it wrote resumes next time."""
        self.stop.set()
        with self._lock:
            reading = list(self._reading)
        for r in reading:
            with contextlib.suppress(Exception):  # already closed, or no socket to shut
                r.raw.connection.sock.shutdown(socket.SHUT_RDWR)

    @property
    def timeouts(self) -> tuple[float, float]:
        return (min(self.timeout, 10.0), self.timeout)

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["User-Agent"] = "quickdraw-cnn-downloader"
            s.headers["Accept-Encoding"] = "identity"  # byte ranges must refer to the file itself
        return s

    def header_guess(self, name: str) -> int:
        remote = cat.manifest().get(name)
        return remote.bytes - remote.rows * ROW_BYTES if remote is not None else GUESS_HEADER

    def overall_update(self, n: int) -> None:
        if self.overall is not None:
            with self._lock:
                self.overall.update(n)


def download(
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    max_rows: int | None = DEFAULT_SUBSET_ROWS,
    base_url: str = cat.OFFICIAL_BASE_URL,
    workers: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> DownloadReport:
    """Fetch each class's first `max_rows` drawings (None: whole, checksum-verified files) into out_dir.

    Raises DownloadError when nothing can start (disk space, server unreachable). Per-class failures do
    not stop the others: they are listed in the returned report. `progress=None` shows bars on a terminal.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: tqdm.write(s, file=sys.stderr))
    jobs = _plan(names, out, base_url, max_rows)
    pending = [j for j in jobs if not j.skip and not j.kept]
    planned = sum(j.plan_bytes for j in pending)
    unknown = sum(1 for j in pending if j.target_bytes is None)
    report = DownloadReport([ClassResult(j.name, j.path, "skipped", j.have) for j in jobs if j.skip])
    report.results += [ClassResult(j.name, j.path, "failed", error=j.kept) for j in jobs if j.kept]
    rows_txt = "whole files" if max_rows is None else f"up to {max_rows:,} drawings each"
    plan = (
        f"{len(jobs)} {'class' if len(jobs) == 1 else 'classes'} ({rows_txt}) from {base_url}: "
        f"{sum(j.skip for j in jobs)} already complete, about {_human(planned)} to fetch"
        + (f" plus {unknown} files of unknown size" if unknown else "")
        + (f"; {len(report.failed)} left as found (named at the end)" if report.failed else "")
    )
    if not pending:
        log(plan)
    else:
        check_disk_space(out, sum(j.target_bytes or 0 for j in pending))  # a .part may copy an existing file
        ctx = _Run(max_rows, retries, backoff, timeout)
        check_reachable(ctx.session(), pending[0].url, timeout)
        log(plan)
        ctx.overall = tqdm(
            total=planned,
            unit="B",
            unit_scale=True,
            desc="total",
            position=0,
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
        )
        slots: queue.Queue[int] = queue.Queue()
        for i in range(1, workers + 1):
            slots.put(i)

        def work(job: _Job) -> ClassResult:
            slot = slots.get()
            bar = tqdm(
                total=job.plan_bytes,
                unit="B",
                unit_scale=True,
                desc=job.name[:20],
                position=slot,
                leave=False,
                disable=ctx.overall.disable,
                dynamic_ncols=True,
            )
            try:
                result = _Fetcher(ctx, job, bar).run()
            finally:
                bar.close()
                slots.put(slot)
            if result.status == "failed":
                log(f"failed {job.name}: {result.error}")
            elif ctx.overall.disable:
                log(f"ok {job.name}: {result.rows:,} rows ({_human(result.fetched)} fetched)")
            return result

        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        interrupted, futures = False, []
        try:
            futures = [pool.submit(work, j) for j in pending]
            for fut in futures:
                report.results.append(fut.result())
        except KeyboardInterrupt:
            interrupted = True
            ctx.interrupt()
            raise
        finally:
            # Interrupted: reads woken by interrupt() cut their files to whole rows within milliseconds;
            # a worker still awaiting a silent server's first answer has no socket to shut, and would
            # hold the return for up to --timeout. It ends by itself then, touching no file (`_get`).
            pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
            if interrupted:
                wait(futures, timeout=INTERRUPT_GRACE)
            ctx.overall.close()
    order = {n: i for i, n in enumerate(names)}
    report.results.sort(key=lambda r: order.get(r.name, 0))
    report.seconds = time.perf_counter() - t0
    return report


# ------------------------------------------------------------------------------------------------ CLI


def _rows_arg(text: str) -> int | None:
    if text.strip().lower() in ("all", "0"):
        return None
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of drawings or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 1, or 'all'")
    return value or None


def _base_url_arg(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is what checks it
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text


def build_parser(prog: str, description: str, default_categories: Path, default_rows: int) -> argparse.ArgumentParser:
    """The option set shared by download_subset.py and download_dataset.py (only the defaults differ)."""
    p = ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Files: DIR/<name with spaces as underscores>.npy (uint8, shape (N, 784)) and DIR/manifest.json\n"
            "(source URL, rows, bytes, sha256 and whether the file is whole, per file). Interrupted\n"
            "downloads leave DIR/<name>.npy.part and are resumed by running the same command again.\n"
            f"Exit status: 0 every class complete; {EXIT_FAILED} some classes failed (listed; good ones kept);\n"
            f"{EXIT_USAGE} bad arguments (e.g. unknown category); {EXIT_CANNOT_START} cannot start (server "
            "unreachable, disk full).\nData: Quick, Draw! by Google Creative Lab, CC BY 4.0."
        ),
    )
    p.add_argument(
        "--categories",
        metavar="NAMES_OR_FILE",
        help="comma-separated class names (spaces allowed, e.g. 'alarm clock,cat') or a text file with one "
        f"name per line; default: {default_categories.relative_to(cat.CATEGORIES_DIR.parent.parent)}",
    )
    p.add_argument(
        "--max-per-class",
        type=_rows_arg,
        default=argparse.SUPPRESS,  # unset tells --synthetic to use its own default
        metavar="N",
        help=f"fetch only the first N drawings of each class with an HTTP Range request (default {default_rows:,}); "
        "'all' (or 0) fetches whole files (~100 MB each) verified against the pinned SHA-256. Asking later "
        f"for more rows fetches only the missing ones. With --synthetic: drawings per class (default 2,000, "
        f"at most {MAX_SYNTHETIC_ROWS:,})",
    )
    p.add_argument("--out", type=Path, default=Path("data"), metavar="DIR", help="output folder (default: data)")
    p.add_argument(
        "--base-url",
        type=_base_url_arg,
        default=cat.OFFICIAL_BASE_URL,
        metavar="URL",
        help="where <URL-encoded name>.npy files are served (a mirror; default: the official bucket)",
    )
    p.add_argument(
        "--workers",
        type=at_most(positive_int, MAX_WORKERS),
        default=8,
        metavar="N",
        help=f"parallel downloads (default 8, at most {MAX_WORKERS})",
    )
    p.add_argument(
        "--retries",
        type=at_most(non_negative_int, MAX_RETRIES),
        default=5,
        metavar="N",
        help=f"retries per class on timeouts, resets and 5xx errors, with exponential backoff (default 5, at "
        f"most {MAX_RETRIES:,})",
    )
    p.add_argument(
        "--backoff",
        type=at_most(non_negative_float, MAX_SECONDS),
        default=1.0,
        metavar="SECONDS",
        help=f"wait before the first retry, doubled each time up to {MAX_WAIT:g} s (default 1.0)",
    )
    p.add_argument(
        "--timeout",
        type=at_most(positive_float, MAX_SECONDS),
        default=30.0,
        metavar="SECONDS",
        help="network timeout per connection/read (default 30)",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="offline: write synthetic doodles in the same layout instead of downloading (default classes: "
        "the generator's simple shapes; --max-per-class sets drawings per class)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed for --synthetic (default 0)")
    return p


def _synthetic(args: argparse.Namespace) -> int:
    from quickdraw_cnn import synthetic  # lazy: only this branch needs the renderer

    rows = getattr(args, "max_per_class", 2000)
    if rows is None or rows > MAX_SYNTHETIC_ROWS:
        print(f"error: --synthetic writes 1 to {MAX_SYNTHETIC_ROWS:,} drawings per class", file=sys.stderr)
        return EXIT_USAGE
    try:
        names = synthetic.check_categories(
            synthetic.SYNTHETIC_CATEGORIES if args.categories is None else cat.parse_categories(args.categories)
        )
    except (cat.CategoryError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        recorded = read_manifest(args.out) if args.out.is_dir() else {}
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    kept = [  # real drawings (downloaded, or of unknown origin) are never replaced by made-up ones
        n
        for n in names
        if (args.out / f"{cat.file_stem(n)}.npy").is_file()
        and recorded.get(f"{cat.file_stem(n)}.npy", {}).get("source") != "synthetic"
    ]
    if kept:
        print(f"kept the drawings already in {args.out} of: {', '.join(kept)}", file=sys.stderr)
        names = [n for n in names if n not in kept]
    entries: list[dict] = []
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        check_disk_space(args.out, len(names) * rows * ROW_BYTES)
        for name in names:  # one class at a time, each on record as soon as it is written
            (path,) = synthetic.write_synthetic(args.out, [name], per_class=rows, seed=args.seed)
            entries.append(_entry(name, Path(path), "synthetic", rows, True, seed=args.seed))
            record_files(args.out, entries[-1:])
    except (DownloadError, OSError) as exc:
        done = f" ({len(entries)} of {len(names)} classes written)" if entries else ""
        print(f"error: cannot write to {args.out}{done}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    total = sum(e["rows"] for e in entries)
    print(f"wrote {len(entries)} synthetic classes ({total:,} drawings) to {args.out}")
    return 0


def main(
    argv: Sequence[str] | None,
    *,
    default_categories: Path = cat.STORY_SQUAD_100,
    default_rows: int = DEFAULT_SUBSET_ROWS,
    prog: str | None = None,
    description: str | None = None,
) -> int:
    """Entry point of download_subset.py / download_dataset.py; returns the exit status."""
    parser = build_parser(prog or "download", description or __doc__.split("\n\n")[0], default_categories, default_rows)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.synthetic:
        return _synthetic(args)
    try:
        names = cat.parse_categories(args.categories, default=default_categories)
    except (cat.CategoryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {args.out} ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        report = download(
            names,
            args.out,
            max_rows=getattr(args, "max_per_class", default_rows),
            base_url=args.base_url,
            workers=args.workers,
            retries=args.retries,
            backoff=args.backoff,
            timeout=args.timeout,
        )
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except OSError as exc:  # the output folder itself (per-class errors are in the report)
        print(f"error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        print("interrupted: finished files are kept, .part files resume on the next run", file=sys.stderr)
        if any(not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)  # Python's exit would wait for a worker stuck until --timeout
        return EXIT_INTERRUPTED
    print(report.summary())
    return EXIT_FAILED if report.failed else 0
