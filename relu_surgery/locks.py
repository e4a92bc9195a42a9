"""One writer per output: an exclusive lock beside the output, naming its holder.

The lock is the file ``.NAME.lock`` in the output's parent directory, held with ``flock`` while a
save, a training run or a comparison writes ``NAME``. A second writer fails at once with one line
that names the holder (pid, host, command, since when). The kernel releases the lock when its
holder dies, so a killed writer never blocks the next one; the file itself is removed on release.
(On systems without ``fcntl`` no lock is taken.)

Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp() + "/run"
    >>> with output_lock(out):
    ...     with try_output_lock(out) as second:
    ...         second
    False
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

from .errors import SurgeryError

__all__ = ["OutputBusyError", "output_lock", "try_output_lock", "lock_path", "short_name"]


class OutputBusyError(SurgeryError):
    """Another process is writing the same output right now.

    A :class:`~relu_surgery.errors.SurgeryError` (one CLI line); its message names the holder.

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp() + "/run"
        >>> with output_lock(out):
        ...     with output_lock(out):  # a second writer of the same output
        ...         pass
        Traceback (most recent call last):
        ...
        relu_surgery.locks.OutputBusyError: .../run is being written by another process (pid ...); wait for it \
to finish or choose another output
        >>> issubclass(OutputBusyError, SurgeryError)
        True
    """


def short_name(name: str, limit: int = 96) -> str:
    """``name`` if it is at most ``limit`` bytes, else a prefix plus a hash (for hidden helper files:
    the lock, temporaries), so an output name of up to 255 bytes still leaves room for them.

    Example:
        >>> short_name("er20"), len(short_name("d" * 250))
        ('er20', 75)
    """
    raw = name.encode()
    if len(raw) <= limit:
        return name
    return raw[:64].decode(errors="ignore") + "~" + hashlib.sha1(raw).hexdigest()[:10]


def lock_path(out) -> Path:
    """The lock file of output ``out``: ``.NAME.lock`` beside it (long names shortened).

    Example:
        >>> lock_path("/runs/er20").as_posix()
        '/runs/.er20.lock'
    """
    out = Path(out).absolute()
    return out.parent / f".{short_name(out.name)}.lock"


def _holder_text() -> str:
    command = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {os.getpid()} on {socket.gethostname()}: {command}; since {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _open_locked(path: Path) -> int | None:
    """An fd holding the exclusive lock on ``path``, or None when another process holds it."""
    import fcntl  # noqa: PLC0415

    for _ in range(16):  # the holder may remove the file between our open and our lock: retry
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise SurgeryError(f"cannot lock {path}: it keeps being replaced")


def _read_holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or "holder unknown"
    except OSError:
        return "holder unknown"


def _release(path: Path, fd: int) -> None:
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_output_lock(out):
    """Try to lock output ``out`` without waiting; yields whether the lock is held.

    Example:
        >>> import tempfile
        >>> with try_output_lock(tempfile.mkdtemp() + "/o") as locked:
        ...     locked
        True
    """
    path = lock_path(out)
    try:
        import fcntl  # noqa: F401, PLC0415
    except ImportError:
        yield True
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(path)
    except OSError as exc:
        raise SurgeryError(f"cannot lock {Path(out)}: {exc.strerror or exc}") from None
    if fd is None:
        yield False
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _holder_text().encode())
        yield True
    finally:
        _release(path, fd)


@contextlib.contextmanager
def output_lock(out):
    """Hold the lock of output ``out`` (a directory, made or not yet) while the block runs.

    Raises :class:`OutputBusyError` at once when another process holds it, naming that process.

    Example:
        >>> import tempfile
        >>> with output_lock(tempfile.mkdtemp() + "/run"):
        ...     pass
    """
    out = Path(out).absolute()
    with try_output_lock(out) as locked:
        if not locked:
            holder = _read_holder(lock_path(out))
            raise OutputBusyError(f"{out} is being written by another process ({holder}); wait for it to "
                                  "finish or choose another output")
        yield
