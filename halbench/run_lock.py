"""One process per output directory: `with run_lock(dir): ...`.

Two `halbench eval` (or train / train-and-eval) processes writing one directory would append duplicate
records and spend the compute twice. The lock is `DIR/.halbench.lock`, held with an exclusive, non-blocking
`fcntl.flock` for the life of the command and holding the owner's PID and command line. A second process
refuses at once with a message naming that PID. The kernel drops a flock when its process dies, so a lock
file left by a killed run (a dead PID) is simply taken over. Re-entrant within one process (train-and-eval
locks OUT and each eval locks OUT/base, OUT/trained).

Under a data-parallel launch only the main rank takes the lock (the other ranks are the same run).
Platforms or filesystems without flock (Windows, some NFS mounts) fall back to the PID in the file: a live
other PID refuses, a dead one is taken over.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from halbench.errors import HalbenchError

LOCK_NAME = ".halbench.lock"
_HELD: dict[str, tuple[int, int]] = {}  # resolved dir -> (fd, depth), this process's locks


class RunLocked(HalbenchError):
    """Another live process holds the output directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "unknown PID"
    pid, _, cmd = text.partition(" ")
    return f"PID {pid}" + (f" ({cmd[:120]})" if cmd else "")


_NO_FLOCK: set[int] = set()  # fds on filesystems without flock (some NFS): the PID file decides


def _try_flock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        _NO_FLOCK.add(fd)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP: no flock here
        _NO_FLOCK.add(fd)
        return True


def _missing_levels(d: Path) -> list[Path]:
    """The directories mkdir(parents=True) is about to create, deepest first."""
    out, p = [], d.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_created(levels: list[Path]) -> None:
    for p in levels:  # deepest first; stops at the first that is not empty
        try:
            p.rmdir()
        except OSError:
            return


def acquire(directory: str | Path) -> tuple[int, Path, list[Path]]:
    """Take the lock (creating the directory); RunLocked naming the holder's PID if another process has it.
    Returns (fd, lock path, the directories created here)."""
    d = Path(directory)
    created = _missing_levels(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HalbenchError(f"cannot create the output directory {d} ({e.strerror})") from e
    path = d / LOCK_NAME
    for _ in range(20):  # the holder may unlink the file between our open and flock: retry on the new file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        locked = _try_flock(fd)
        if not locked or _same_file(fd, path):
            break
        os.close(fd)
    try:
        if not locked or (fd in _NO_FLOCK and not _pid_file_free(path)):
            raise RunLocked(f"{d} is in use by another halbench process, {_owner(path)}; wait for it to finish "
                            "or use another --output-dir")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {' '.join(sys.argv)[:500]}\n".encode("utf-8", "replace"))
        os.fsync(fd)
    except BaseException:
        _NO_FLOCK.discard(fd)
        os.close(fd)
        _remove_created(created)
        raise
    return fd, path, created


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _pid_file_free(path: Path) -> bool:
    """Without flock only the recorded PID can tell: a live other process holds it, a dead one does not."""
    text = path.read_text(encoding="utf-8", errors="replace").split() if path.exists() else []
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid is None or pid == os.getpid() or not _pid_alive(pid)


def release(fd: int, path: Path, created: list[Path] = ()) -> None:
    """Drop the lock; the file goes, and the directories created for it too when the lock was all they held
    (so a run refused by a preflight check leaves nothing behind)."""
    try:
        path.unlink(missing_ok=True)
    finally:
        _NO_FLOCK.discard(fd)
        os.close(fd)
    _remove_created(list(created))


@contextlib.contextmanager
def run_lock(directory: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold DIR's lock for the block (re-entrant in one process; `enabled=False` for non-main ranks)."""
    if not enabled:
        yield
        return
    key = os.path.abspath(os.fspath(directory))
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    fd, path, created = acquire(directory)
    _HELD[key] = (fd, 1)
    try:
        yield
    finally:
        del _HELD[key]
        release(fd, path, created)
