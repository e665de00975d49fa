"""A local stand-in for the QuickDraw bucket: serves `.npy` files with Range support and fault injection.

Used by the download tests and bench/bench_download.py. It listens on 127.0.0.1 (port chosen by the OS),
counts every body byte it sends, and can misbehave on purpose, per file, for a given number of requests:

    drop           send the headers and only `after` bytes of the body, then close the connection
    error500       answer 500 Internal Server Error
    wrong_length   claim a Content-Length `delta` bytes larger than the body sent, then close
    short_length   claim a Content-Length `delta` bytes smaller than the range (and send that many bytes)
    html           answer 200 with an HTML page (what captive portals and error pages do)
    404            answer 404 Not Found
    corrupt_header send the file with its `.npy` header garbled
    slow           wait `delay` seconds before sending the body
    mute           wait `delay` seconds before answering at all (recorded at once, with status 0)
    ignore_range   answer 200 with the whole file even when a Range was asked

Files are looked up by URL-decoded name: `/alarm%20clock.npy` serves `<root>/alarm clock.npy`.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

CHUNK = 1 << 20
FAULTS = {
    "drop",
    "redirect_loop",  # 302 to itself, every time
    "error500",
    "wrong_length",
    "short_length",
    "html",
    "404",
    "corrupt_header",
    "slow",
    "mute",
    "ignore_range",
}


def npy_header(rows: int, length: int = 80) -> bytes:
    """A v1.0 `.npy` header for uint8 (rows, 784) padded to `length` bytes (the official files use 80)."""
    body = repr({"descr": "|u1", "fortran_order": False, "shape": (rows, 784)}).encode("latin1")
    pad = length - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"a header for {rows} rows does not fit in {length} bytes")
    body += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def make_npy(path: Path, rows: int, seed: int = 0, header_len: int = 80) -> np.ndarray:
    """Write a QuickDraw-like file of random rows (row i's first byte is i % 256) and return the rows."""
    data = np.random.default_rng(seed).integers(0, 256, size=(rows, 784), dtype=np.uint8)
    data[:, 0] = np.arange(rows) % 256
    path.write_bytes(npy_header(rows, header_len) + data.tobytes())
    return data


@dataclass
class Fault:
    kind: str
    times: int = 1
    after: int = 0  # drop: body bytes sent before closing
    delta: int = 1000  # wrong_length / short_length
    delay: float = 0.0  # slow, mute


@dataclass
class Record:
    """One request as the server saw it; `sent` counts the body bytes actually written to the socket."""

    method: str
    path: str  # raw request path, e.g. /alarm%20clock.npy
    name: str  # decoded file name, e.g. alarm clock.npy
    range: str | None
    status: int
    sent: int = 0


@dataclass
class _State:
    root: Path
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class QuietHTTPServer(ThreadingHTTPServer):
    """Connections the tests drop on purpose (or that a client abandons) are expected, not worth a traceback."""

    def handle_error(self, request, client_address) -> None:
        pass


class NpyServer:
    """Threaded HTTP server over a folder of `.npy` files; use as a context manager or start()/stop()."""

    def __init__(self, root: str | Path) -> None:
        self.state = _State(Path(root))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = QuietHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def root(self) -> Path:
        return self.state.root

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> NpyServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> NpyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_file(self, name: str, rows: int, seed: int = 0, header_len: int = 80) -> np.ndarray:
        """Serve `<name>.npy` with `rows` random drawings; returns the rows for comparison."""
        self.root.mkdir(parents=True, exist_ok=True)
        return make_npy(self.root / f"{name}.npy", rows, seed, header_len)

    def add_fault(self, name: str, kind: str, times: int = 1, **kwargs: float) -> None:
        """Misbehave on the next `times` GET requests for `name` (a category name or file name)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        file = name if name.endswith(".npy") else f"{name}.npy"
        with self.state.lock:
            self.state.faults.setdefault(file, []).append(Fault(kind, times, **kwargs))

    def records(self, name: str | None = None) -> list[Record]:
        file = None if name is None else (name if name.endswith(".npy") else f"{name}.npy")
        with self.state.lock:
            return [r for r in self.state.records if file is None or r.name == file]

    def bytes_sent(self, name: str | None = None) -> int:
        """Body bytes sent (for one file, or all), the figure the download tests and benchmark check."""
        return sum(r.sent for r in self.records(name))

    def reset(self) -> None:
        with self.state.lock:
            self.state.records.clear()
            self.state.faults.clear()


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep tests quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _take_fault(self, name: str) -> Fault | None:
        with self.state.lock:
            queue = self.state.faults.get(name, [])
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def _record(self, name: str, status: int) -> Record:
        record = Record(self.command, self.path, name, self.headers.get("Range"), status)
        with self.state.lock:
            self.state.records.append(record)
        return record

    def _simple(self, name: str, status: int, body: bytes, ctype: str = "text/plain") -> None:
        record = self._record(name, status)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            record.sent = len(body)

    def _serve(self, head: bool) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        path = self.state.root / name
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            self._simple(name, 404, b"Not Found")
            return
        fault = None if head else self._take_fault(name)
        kind = fault.kind if fault else None
        if kind == "mute":
            self._record(name, 0)
            time.sleep(float(fault.delay))
        if kind == "error500":
            self._simple(name, 500, b"Internal Server Error")
            return
        if kind == "404":
            self._simple(name, 404, b"Not Found")
            return
        if kind == "redirect_loop":
            self._record(name, 302)
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "html":
            page = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"
            self._simple(name, 200, page, "text/html; charset=utf-8")
            return

        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header and kind != "ignore_range":
            m = _RANGE.match(header.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                self._simple(name, 400, b"bad Range")
                return
            if m.group(1) == "":  # suffix range: last n bytes
                start = max(0, size - int(m.group(2)))
            else:
                start = int(m.group(1))
                if m.group(2):
                    end = min(int(m.group(2)), size - 1)
            if start >= size or start > end:
                record = self._record(name, 416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        to_send = length
        claimed = length
        if kind == "wrong_length":
            claimed = length + int(fault.delta)
        elif kind == "short_length":
            claimed = to_send = max(0, length - int(fault.delta))
        elif kind == "drop":
            to_send = min(length, int(fault.after))

        record = self._record(name, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(claimed))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if kind in ("drop", "wrong_length"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        if kind == "slow":
            self.wfile.flush()
            time.sleep(float(fault.delay))
        try:
            with open(path, "rb") as f:
                f.seek(start)
                pos = start
                remaining = to_send
                while remaining > 0:
                    chunk = f.read(min(CHUNK, remaining))
                    if not chunk:
                        break
                    if kind == "corrupt_header" and pos < 64:
                        garbled = bytearray(chunk)
                        for i in range(max(0, 8 - pos), min(len(chunk), 64 - pos)):
                            garbled[i] = ord("#")
                        chunk = bytes(garbled)
                    self.wfile.write(chunk)
                    record.sent += len(chunk)
                    pos += len(chunk)
                    remaining -= len(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: normal for ranged/aborted transfers
        if kind in ("drop", "wrong_length", "short_length"):
            self.close_connection = True
