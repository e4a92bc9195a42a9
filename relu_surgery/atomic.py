"""Atomic writes, the one implementation every writer uses: files and whole directories.

A file is written to a hidden temporary beside it (``.NAME.tmp-PID-HEX``), flushed to disk and
renamed onto its name, so a reader sees the old file or the new one. A directory is written into a
hidden temporary directory and swapped in with one atomic exchange (Linux
``renameat2(RENAME_EXCHANGE)``): a reader sees the old directory or the new one, never neither.
Where the exchange is not available, two renames are used, and a directory found missing between
them (a killed writer) is put back by the next reader or writer (:func:`recover_directory`).

Temporaries a killed writer left behind are removed by the next write to the same place. Files and
directories get the modes of the user's umask (0666 / 0777 masked), whatever the library writing
them chose. Names of temporaries stay short, so an output name of up to 255 bytes works.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_json({"loss": float("nan")}, folder / "result.json")
    >>> (folder / "result.json").read_text()
    '{\\n  "loss": null\\n}\\n'
    >>> out = replace_directory(folder / "run", lambda tmp: (tmp / "a.txt").write_text("new"))
    >>> sorted(p.name for p in folder.iterdir())
    ['result.json', 'run']
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import SurgeryError
from .locks import output_lock, short_name, try_output_lock

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "json_safe",
           "replace_directory", "recover_directory", "remove_stale", "ensure_directory", "short_name",
           "user_mode", "KILL_ENV"]

#: Test hook: "exchange" kills the writer right after the atomic exchange of a directory
#: replacement (before the old copy is removed); "renames" forces the two-rename fallback and kills
#: the writer between the two renames.
KILL_ENV = "RELU_SURGERY_TEST_KILL_REPLACE"
_RENAME_EXCHANGE = 2


def _temp_path(path: Path, kind: str = "tmp") -> Path:
    return path.parent / f".{short_name(path.name)}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _leftovers(path: Path, kinds: str = "tmp|old") -> list[tuple[Path, str, int]]:
    """Hidden temporaries of earlier writes of ``path``: (entry, kind, writer pid)."""
    pattern = re.compile(rf"^\.{re.escape(short_name(path.name))}\.({kinds})-(\d+)-[0-9a-f]+$")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    return [(Path(e.path), m.group(1), int(m.group(2))) for e in entries if (m := pattern.match(e.name))]


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def remove_stale(path, any_writer: bool = False) -> list[str]:
    """Remove the temporaries that killed writes of ``path`` left; returns their names.

    Without ``any_writer`` only those of processes that no longer run go; with it (the caller holds
    the output's lock, so no other writer is active) all of them.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".a.txt.tmp-999999999-00ff").write_text("half")
        >>> remove_stale(folder / "a.txt")
        ['.a.txt.tmp-999999999-00ff']
    """
    path = Path(path)
    gone = []
    for entry, _, pid in _leftovers(path):
        if any_writer or not _alive(pid):
            _remove(entry)
            gone.append(entry.name)
    return gone


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def user_mode(directory: bool = False) -> int:
    """The mode a new file (0666) or directory (0777) gets under the user's umask.

    Example:
        >>> old = os.umask(0o022); mode = user_mode(); _ = os.umask(old)
        >>> oct(mode)
        '0o644'
    """
    return (0o777 if directory else 0o666) & ~_umask()


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _os_error(path: Path, exc: OSError) -> SurgeryError:
    """One line for an output path the system refuses (a file in the way, a name too long, ...)."""
    if exc.errno == errno.ENAMETOOLONG:
        return SurgeryError(f"cannot write {path}: a name in it is too long (at most 255 bytes)")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        return SurgeryError(f"cannot write {path}: {blocker} is a file, not a directory")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SurgeryError(f"cannot write {path}: {exc.strerror.lower()}")
    return SurgeryError(f"cannot write {path}: {exc.strerror or exc}")


def ensure_directory(path) -> Path:
    """Create directory ``path`` (and its parents) with the user's umask; one-line error if it cannot be.

    Example:
        >>> import tempfile
        >>> ensure_directory(tempfile.mkdtemp() + "/a/b").is_dir()
        True
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(path, exc) from None
    return path


def atomic_write(path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)``, fsync the file and rename it onto ``path`` (same directory).

    The file gets the umask's mode; temporaries of killed earlier writes of ``path`` are removed.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write(path, lambda tmp: tmp.write_bytes(b"data"))
        >>> path.read_bytes()
        b'data'
    """
    path = Path(path)
    ensure_directory(path.parent)
    remove_stale(path)
    tmp = _temp_path(path)
    try:
        write(tmp)
        os.chmod(tmp, user_mode())
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _os_error(path, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync(path.parent, directory=True)


def atomic_write_bytes(data: bytes, path) -> None:
    """Write ``data`` to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.bin"
        >>> atomic_write_bytes(b"old", path); atomic_write_bytes(b"new", path)
        >>> path.read_bytes(), [p.name for p in path.parent.iterdir()]  # replaced, no temporary left
        (b'new', ['w.bin'])
    """
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(text: str, path) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write_text("grüße", path)
        >>> path.read_text(encoding="utf-8"), len(path.read_bytes())  # ü and ß take two bytes each
        ('grüße', 7)
    """
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN / infinite float replaced by None (JSON has no such numbers).

    Example:
        >>> json_safe({"a": float("inf"), "b": [1.0, float("nan")]})
        {'a': None, 'b': [1.0, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(obj: Any, path) -> None:
    """Write ``obj`` as indented, valid JSON (non-finite numbers as null) to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> atomic_write_json({"acc": (0.5, 0.75), "loss": float("inf")}, path)
        >>> json.loads(path.read_text())
        {'acc': [0.5, 0.75], 'loss': None}
    """
    atomic_write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n", path)


def _test_kill(point: str) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _exchange(a: Path, b: Path) -> bool:
    """Swap paths ``a`` and ``b`` in one step (Linux renameat2); False where that is not available."""
    if not sys.platform.startswith("linux") or os.environ.get(KILL_ENV) == "renames":
        return False
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(tmp: Path, out: Path) -> Path:
    """Put ``tmp`` at ``out`` (which exists); returns where the old ``out`` now is."""
    if _exchange(tmp, out):
        _test_kill("exchange")
        return tmp
    old = _temp_path(out, "old")
    os.rename(out, old)
    _test_kill("renames")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    return old


def _restore_old(path: Path) -> bool:
    """Rename the newest ``.NAME.old-*`` copy back to a missing ``path`` (caller holds the lock)."""
    if path.exists() or path.is_symlink():
        return False
    olds = sorted((e for e, _, _ in _leftovers(path, "old") if e.is_dir()), key=lambda e: e.stat().st_mtime)
    if not olds:
        return False
    os.rename(olds[-1], path)
    return True


def recover_directory(path) -> bool:
    """Put back a directory that a writer killed between its two renames left missing.

    Does nothing when ``path`` exists, when nothing is left to restore, or while a writer holds the
    output's lock. Returns whether a directory was restored.

    Example:
        >>> import tempfile
        >>> recover_directory(tempfile.mkdtemp() + "/nothing-here")
        False
    """
    path = Path(path).absolute()
    if path.exists() or path.is_symlink() or not _leftovers(path, "old"):
        return False
    with try_output_lock(path) as locked:
        return bool(locked) and _restore_old(path)


def _output_path(out) -> Path:
    out = Path(out).absolute()
    if any(len(part.encode()) > 255 for part in out.parts):
        raise SurgeryError(f"cannot write {out}: a name in it is too long (at most 255 bytes)")
    if out.is_symlink():
        raise SurgeryError(f"output {out} is a symbolic link; name the directory itself")
    return out.resolve()


def replace_directory(out, write: Callable[[Path], Any], check: Callable[[Path], None] | None = None) -> Path:
    """Write a directory atomically: ``write(tmp_dir)``, then ``tmp_dir`` takes the place of ``out``.

    Holds the output's lock throughout (a second writer fails at once, naming this one). An existing
    ``out`` is first given to ``check(out)``, which raises to refuse replacing it. A failure inside
    ``write`` leaves ``out`` as it was and no temporary behind; temporaries of killed earlier writes
    are removed. Returns the resolved path.

    Example:
        >>> import tempfile
        >>> out = replace_directory(tempfile.mkdtemp() + "/o", lambda tmp: (tmp / "f").write_text("1"))
        >>> (out / "f").read_text()
        '1'
    """
    out = _output_path(out)
    ensure_directory(out.parent)
    with output_lock(out):
        _restore_old(out)
        remove_stale(out, any_writer=True)
        if out.exists() and check is not None:
            check(out)
        tmp = _temp_path(out)
        try:
            os.mkdir(tmp)
            os.chmod(tmp, user_mode(directory=True))
            write(tmp)
            for entry in tmp.iterdir():
                if entry.is_file():
                    os.chmod(entry, user_mode())
                    _fsync(entry)
            old = None
            if out.exists():
                old = _swap_in(tmp, out)
            else:
                os.rename(tmp, out)
        except BaseException:
            _remove(tmp)
            raise
        if old is not None:
            _remove(old)
        _fsync(out.parent, directory=True)
    return out
