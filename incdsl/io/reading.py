"""Reading files: every spec, included file and table incdsl reads goes through here.

Reading (specs, included files, `--against` tables): regular files only (or `-`, standard
input, when the command line says so), at most `MAX_FILE_BYTES`, UTF-8 with the place of a
bad byte. Includes resolve only inside the top-level spec's directory tree and the include
path (`-I DIR`, `INCDSL_PATH`), symbolic links followed before that is checked.
"""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

MAX_FILE_BYTES = 1 << 20  # one spec, library or table: the largest in specs/ is ~10 KB
MAX_TOTAL_BYTES = 8 << 20  # all the files one spec includes, together
MAX_INCLUDED_FILES = 1000
STDIN = "-"
ENV_INCLUDE_PATH = "INCDSL_PATH"


class ReadError(Exception):
    """A file that cannot be read as a text: why, and for a bad byte its line and column."""

    def __init__(self, reason: str, line: int | None = None, col: int | None = None, too_large: bool = False):
        super().__init__(reason)
        self.reason, self.line, self.col, self.too_large = reason, line, col, too_large


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _read_bytes(path: str, limit: int, follow: bool = True, locate: bool = False) -> bytes:
    """At most `limit` bytes of a regular file; never blocks on a FIFO, never reads a device.
    `follow=False` refuses a symbolic link as the last part of `path` (one resolved already)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO with no writer would wait forever
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            # `locate`: say where the limit is passed (a spec's message points there)
            line, col = _position(os.read(fd, limit)) if locate else (None, None)
            raise ReadError(f"it is larger than {_size(limit)} ({info.st_size:,} bytes)", line, col, too_large=True)
        return _read_at_most(fd, limit)
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total <= limit:  # /proc files say size 0 and have more: read up to the limit, not st_size
        chunk = os.read(fd, min(1 << 16, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise ReadError(f"it is larger than {_size(limit)}", too_large=True)
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n:,} bytes"


def decode(data: bytes) -> str:
    """UTF-8 text without its byte-order mark; a bad byte raises ReadError with its line and column.

    Lines end at \\n, \\r\\n or a lone \\r, as the parser counts them.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data[: exc.start])
        raise ReadError(f"invalid UTF-8 (byte 0x{data[exc.start]:02x})", line, col) from None


def _position(before: bytes) -> tuple[int, int]:
    """(line, column) just after `before`, the start of a file, counted as the parser counts."""
    text = before.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def read_text(path: str, *, limit: int | None = None, stdin_ok: bool = False) -> str:
    """The text of a regular file (or of standard input for `-` when `stdin_ok`), read once,
    at most `limit` bytes (default `MAX_FILE_BYTES`).

    Raises:
        FileNotFoundError, OSError: the file cannot be opened.
        ReadError: it is not a regular file, is larger than `limit` bytes, or is not UTF-8.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    if stdin_ok and path == STDIN:
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise ReadError(f"standard input holds more than {_size(limit)}", *_position(data[:limit]),
                            too_large=True)
        return decode(data)
    return decode(_read_bytes(path, limit, locate=True))


def os_reason(exc: OSError) -> str:
    """`it does not exist`, `permission denied`: why a file could not be opened, in words."""
    if isinstance(exc, FileNotFoundError):
        return "it does not exist"
    return (exc.strerror or str(exc)).lower()


def env_include_path() -> list[str]:
    """The directories of `INCDSL_PATH` (os.pathsep-separated; empty entries skipped)."""
    return [d for d in os.environ.get(ENV_INCLUDE_PATH, "").split(os.pathsep) if d]


class IncludeError(Exception):
    """An `include` that may not or cannot be read: the message, notes and hint of its diagnostic."""

    def __init__(self, message: str, notes=(), hint: str | None = None, line: int | None = None,
                 col: int | None = None, file: str | None = None):
        super().__init__(message)
        self.message, self.notes, self.hint = message, list(notes), hint
        self.file, self.line, self.col = file, line, col  # a bad byte inside the included file


@dataclass
class Includes:
    """Resolves and reads the files a spec includes: the one place that decides what may be read.

    An include path is relative (never absolute). It is looked up beside the file that holds
    the `include`, then in each directory of the include path, in order. The file found must
    lie, after symbolic links are followed, inside the top-level spec's directory tree (see
    `spec_root`) or one of the include path's directories, and be a regular file of at most `MAX_FILE_BYTES`;
    the files one spec includes hold at most `MAX_TOTAL_BYTES` together.
    """
    spec_dir: str
    path: list = field(default_factory=list)
    total: int = 0
    count: int = 0

    @classmethod
    def for_spec(cls, file: str, include_path=None) -> "Includes":
        """The resolver for the top-level spec `file` (a name without a directory: the working directory);
        `include_path` is a list of directories, or one."""
        if isinstance(include_path, (str, bytes, os.PathLike)):  # one directory, not its characters
            include_path = [include_path]
        try:
            dirs = list(include_path or ()) + env_include_path()
        except TypeError:
            raise TypeError(f"include_path must be a list of directories, got {type(include_path).__name__}") from None
        return cls(spec_root(os.path.dirname(file) or "."), [os.fsdecode(d) for d in dirs])

    def roots(self) -> list[str]:
        return [os.path.realpath(d) for d in [self.spec_dir, *self.path]]

    def resolve(self, includer: str, written: str) -> tuple[str, str]:
        """(name to report, real path) of `include "written"` in the file `includer`.

        Raises:
            IncludeError: a path that is absolute or strange, a file not found, or found outside the roots.
        """
        _check_written(written)
        candidates = [os.path.normpath(os.path.join(os.path.dirname(includer), written))]
        candidates += [os.path.normpath(os.path.join(d, written)) for d in self.path]
        for name in candidates:
            if os.path.lexists(name):
                real = os.path.realpath(name)
                if not any(_inside(real, root) for root in self.roots()):
                    raise IncludeError(f"included file `{written}` lies outside the spec's directory",
                                       notes=[f"it resolves to {real}"], hint=_ROOTS_HINT)
                return name, real
        raise IncludeError(f"cannot read included file `{written}`",
                           notes=[f"looked for {c}: it does not exist" for c in candidates], hint=_ROOTS_HINT)

    def read(self, name: str, real: str) -> str:
        """The text of a resolved include, within the per-file and total caps.

        Raises:
            IncludeError: not a regular file, too large, not UTF-8 (with its line and column), unreadable.
        """
        if self.count >= MAX_INCLUDED_FILES:
            raise IncludeError(f"a spec includes at most {MAX_INCLUDED_FILES:,} files")
        limit = min(MAX_FILE_BYTES, MAX_TOTAL_BYTES - self.total)
        try:
            data = _read_bytes(real, limit, follow=False)
            text = decode(data)
        except ReadError as exc:
            if exc.line is not None:
                raise IncludeError(exc.reason, file=name, line=exc.line, col=exc.col) from None
            total = exc.too_large and limit < MAX_FILE_BYTES
            reason = f"the included files together exceed {_size(MAX_TOTAL_BYTES)}" if total else exc.reason
            raise IncludeError(f"cannot read included file {name}: {reason}") from None
        except OSError as exc:
            raise IncludeError(f"cannot read included file {name}: {os_reason(exc)}") from None
        self.count += 1
        self.total += len(data)
        return text


ROOT_MARKER = ".incdsl-root"


def spec_root(spec_dir: str) -> str:
    """The directory tree a spec in `spec_dir` may include from: the nearest directory at or above
    it that holds a `.incdsl-root` file (a project's spec folder: `specs/` holds one, so
    `specs/variants/x.inc` may include `../lib/y.inc`), or else `spec_dir` itself.

    A marker counts only where its owner chose it: a regular file of the current user (or root)
    in a directory no one else may write, so one planted in /tmp widens nothing.
    """
    here = os.path.realpath(spec_dir)
    while True:
        if _trusted_marker(os.path.join(here, ROOT_MARKER)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return spec_dir
        here = parent


def _trusted_marker(path: str) -> bool:
    try:
        info, folder = os.lstat(path), os.stat(os.path.dirname(path))
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or folder.st_mode & 0o022:
        return False
    return not hasattr(os, "getuid") or info.st_uid in (os.getuid(), 0)


_ROOTS_HINT = ("include paths are relative to the including file, inside the spec's directory tree "
               "or a directory given with -I DIR or INCDSL_PATH")


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def _check_written(written: str) -> None:
    if not written:
        raise IncludeError("empty include path")
    if any(not ch.isprintable() for ch in written):
        raise IncludeError("an include path cannot hold control characters")
    if os.path.isabs(written) or written.startswith(("/", "\\")) or os.path.splitdrive(written)[0]:
        raise IncludeError(f"include path `{written}` is absolute", hint=_ROOTS_HINT)
