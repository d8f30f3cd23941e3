"""Writing files: every output file incdsl writes goes through here.

`write_atomic(path, data, inputs=...)` is how every command writes an output file:

- a regular file (new or existing) is written whole or not at all: a temp file beside the
  target, flushed to disk, then renamed over it. An existing file keeps its permission bits
  (and its owner, where we may set it);
- a symlink is followed: its resolved target is replaced, the link stays a link;
- a character device or a FIFO (``/dev/null``, a terminal, a named pipe) is written directly,
  as any tool writes to it; ``-``, ``/dev/stdout``, ``/dev/stderr`` and ``/dev/fd/N`` write to
  that open stream (appending where the shell opened it so); a FIFO nobody reads is an error,
  not a hang;
- refused with `OutputError`: a directory, a block device or socket, a file the user may not
  write, a read-only file (no write bit for anyone: refused even for root, who could write
  it, because the bits say "keep"), and any file the command reads (`inputs`: the spec, its
  included files, --against, --weights).

Every failure (missing directory, permissions, a full disk, a read-only file system) is an
`OutputError` whose text reads ``cannot write PATH: reason``; the CLI prints it on one line
and exits 1.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterable


class OutputError(OSError):
    """An output cannot be written; the message reads ``cannot write PATH: reason``."""


_STREAM_PATH = re.compile(r"^(?:-|/dev/(stdout|stderr)|/dev/fd/(\d+)|/proc/self/fd/(\d+))$")
_REASONS = {  # lowercase, as every incdsl message
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "it is a directory",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EBADF: "the stream is not open",
    errno.ENXIO: "no process is reading the FIFO",
    errno.EPIPE: "the reader went away",
}


def reason(exc: OSError) -> str:
    """An OSError as a short lowercase phrase."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


@dataclass(frozen=True)
class Target:
    """Where `write_atomic` puts the bytes: ``how`` is ``stream`` (an open descriptor,
    `fd`), ``direct`` (a device or FIFO at `path`) or ``replace`` (a regular file at `path`,
    the symlink-resolved target; `mode` and `owner` are kept when it exists)."""
    how: str
    path: str = ""
    fd: int = -1
    mode: int | None = None
    owner: tuple[int, int] | None = None


def check_output(path: str, inputs: Iterable[str] = ()) -> Target:
    """Where `path` would be written, or OutputError: a check before long work (`--onnx`).

    Parameters:
        path: the output path as the user gave it (``-`` for standard output).
        inputs: files the command reads; none of them may be the output.
    Raises:
        OutputError: the output cannot or must not be written (see the module docstring).
    """
    m = _STREAM_PATH.match(path)
    if m:
        fd = 1 if path in ("-", "/dev/stdout") else 2 if m.group(1) == "stderr" else int(m.group(2) or m.group(3))
        return Target("stream", fd=fd)
    real = os.path.realpath(path)  # follow symlinks: the link's target is what gets replaced
    try:
        st = os.stat(real)
    except FileNotFoundError:
        _check_directory(path, real)
        return Target("replace", real)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return Target("direct", real)
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"cannot write {path}: not a regular file, character device or FIFO")
    _check_not_input(path, st, inputs)
    if not st.st_mode & 0o222:
        raise OutputError(f"cannot write {path}: the file is read-only (mode {stat.S_IMODE(st.st_mode):04o}); "
                          "remove it or make it writable first")
    if not os.access(real, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")
    _check_directory(path, real)
    return Target("replace", real, mode=stat.S_IMODE(st.st_mode), owner=(st.st_uid, st.st_gid))


def _check_directory(path: str, real: str) -> None:
    """The directory that will hold the temp file exists and takes new files: we try one, as
    permission bits do not tell (root, /proc, a read-only mount)."""
    directory = os.path.dirname(real) or "."
    if not os.path.isdir(directory):
        what = "not a directory" if os.path.exists(directory) else "no such directory"
        raise OutputError(f"cannot write {path}: {what} {directory}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".incdsl-", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {reason(exc)}") from None
    os.close(fd)
    os.unlink(probe)


def _check_not_input(path: str, st: os.stat_result, inputs: Iterable[str]) -> None:
    for source in inputs:
        try:
            other = os.stat(source)
        except OSError:
            continue  # not a file (spec text given directly): nothing to clobber
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            alias = "" if os.path.abspath(source) == os.path.abspath(path) else f" ({source})"
            raise OutputError(f"cannot write {path}: it is an input of this command{alias}; "
                              "choose another output file")


def check_not_inputs(outputs: Iterable[str], inputs: Iterable[str]) -> None:
    """Raise OutputError if an existing file of `outputs` is one of `inputs`: for commands that
    write several files later (`train --out`), checked before any work is done."""
    inputs = list(inputs)
    for path in outputs:
        try:
            st = os.stat(path)
        except OSError:
            continue  # not there yet: nothing to clobber
        _check_not_input(path, st, inputs)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_atomic(path: str, data: str | bytes, *, inputs: Iterable[str] = ()) -> None:
    """Write one output file: a regular file whole or not at all; see the module docstring.

    Parameters:
        path: the output path (``-`` for standard output).
        data: the whole content (text is written as UTF-8).
        inputs: files this command reads, which must not be overwritten.
    Raises:
        OutputError: the output cannot or must not be written; nothing was changed.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target = check_output(path, inputs)
    try:
        if target.how == "stream":
            _write_stream(target.fd, payload)
        elif target.how == "direct":
            _write_direct(target.path, payload)
        else:
            _replace(target, payload)
    except (OutputError, BrokenPipeError):
        raise  # a closed pipe on standard output is the reader's choice: the CLI exits quietly
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {reason(exc)}") from None


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _write_stream(fd: int, payload: bytes) -> None:
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    if stream is not None and hasattr(stream, "buffer"):
        stream.flush()  # keep the order with what was printed before
        stream.buffer.write(payload)
        stream.buffer.flush()
    else:
        _write_all(fd, payload)


def _write_direct(path: str, payload: bytes) -> None:
    # O_NONBLOCK: opening a FIFO without a reader fails (ENXIO) instead of waiting forever
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        os.set_blocking(fd, True)
        _write_all(fd, payload)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(target: Target, payload: bytes) -> None:
    directory = os.path.dirname(target.path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".incdsl-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        if target.owner is not None:
            _keep_owner(tmp, target.owner)
        # mkstemp makes 0600: keep an existing file's mode, else the usual one for a new file
        os.chmod(tmp, target.mode if target.mode is not None else 0o666 & ~current_umask())
        os.replace(tmp, target.path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_directory(directory)


def _keep_owner(tmp: str, owner: tuple[int, int]) -> None:
    st = os.stat(tmp)
    if (st.st_uid, st.st_gid) != owner:
        try:
            os.chown(tmp, *owner)  # root may; others may only keep their own uid
        except OSError:
            pass


def _sync_directory(directory: str) -> None:
    """Make the rename durable (best effort: not every file system can sync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def prepare_output_dir(path: str, create: bool = True) -> None:
    """Create an output directory (with its parents) or check an existing one takes files.
    With `create=False`, only check that it could be created: a command that may still fail
    on other input (`train` on a bad --data) then leaves no empty folder behind.

    Raises:
        OutputError: it cannot be created, is not a directory, or is not writable.
    """
    if not create:
        _check_creatable_dir(path)
        return
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write {path}: it exists and is not a directory") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {reason(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: permission denied")


def _check_creatable_dir(path: str) -> None:
    """`path` is a writable directory, or the nearest existing folder above it is one."""
    here = os.path.abspath(path)
    while not os.path.lexists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        what = "it" if here == os.path.abspath(path) else here
        raise OutputError(f"cannot write {path}: {what} exists and is not a directory")
    if not os.access(here, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: permission denied")
