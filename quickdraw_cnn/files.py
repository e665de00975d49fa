"""Writes that a reader (or a crash) never sees half done: a file or a whole folder appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so no folder locks there
    fcntl = None


def sync_file(path: str | os.PathLike) -> None:
    """Flush a file's contents to the disk before it is renamed into place: after a power cut a renamed
    file can otherwise come back empty, under its final name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: str | os.PathLike) -> None:
    """sync_file for every regular file under `folder` (not following links)."""
    for root, _, names in os.walk(folder):
        for name in names:
            if not os.path.islink(os.path.join(root, name)):
                sync_file(os.path.join(root, name))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write to `<name>.part` beside the target, then rename over it (atomic on one filesystem)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    sync_file(tmp)
    os.replace(tmp, path)


def swap_dir(new: Path, target: Path) -> None:
    """Put the complete folder `new` where `target` is, keeping the old one until the new one is in.

    The old folder is renamed aside into `.<name>.old-*/m`, the new one renamed in, then the old one
    deleted; if the second rename fails the old folder goes back. A crash between the two renames
    leaves the old folder aside, where `recover_interrupted` finds it.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / "m")  # rename within the parent's filesystem: atomic
    try:
        os.rename(new, target)
    except OSError:
        os.rename(old / "m", target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def not_replaceable(target: Path, option: str, inside: str = "models") -> str | None:
    """Why `swap_dir` cannot replace `target` (None when it can): a mount point, a Docker volume say,
    cannot be renamed. Checked before the work, so the run is not lost at its end."""
    if os.path.ismount(target):
        return (
            f"{option} {target} is a mount point, which cannot be replaced whole; "
            f"give a folder inside it, e.g. {Path(target) / inside}"
        )
    return None


def recover_interrupted(target: str | os.PathLike) -> bool:
    """Put back a folder that `swap_dir` left aside when it was killed between its two renames."""
    target = Path(target)
    if target.exists():
        return False
    olds = sorted(target.parent.glob(f".{target.name}.old-*/m"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.rename(olds[-1], target)
    shutil.rmtree(olds[-1].parent, ignore_errors=True)
    return True


def is_within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or inside it (both resolved by the caller)."""
    return path == folder or folder in path.parents


def lock_folder(folder: str | os.PathLike, wait: bool = True) -> int | None:
    """An advisory lock on `folder` itself (flock), held until the returned descriptor is closed; None
    where the OS has no flock. With `wait=False`, BlockingIOError if another process holds it."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def lock_file(path: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold an advisory lock (flock) on the file `path`, made for it and removed after; yields False
    (holding nothing) when `wait` is False and another process holds it. Where the OS has no flock,
    yields True without locking.

    Removing the file is safe because a lock counts only while `path` still names the locked file:
    one taken on a file removed meanwhile is dropped and taken again."""
    if fcntl is None:
        yield True
        return
    path = os.fspath(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
