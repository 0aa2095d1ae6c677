"""Where the commands write: one rule and one kind of error for every output file.

The rule: a command never replaces an existing file unless it is given `--force`; it writes a
new file whole or not at all (a failed write leaves no partial file behind); it creates missing
parent folders; and a device or pipe named as output (`-o /dev/stdout`) is written to, not
replaced. Anything the file system refuses becomes an `OutputError` whose message names the
path, says what went wrong and what to do; the command line prints it as one line.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import OutputError

__all__ = ["OutputError", "check", "new_folder", "write", "write_all"]


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _hint(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a folder you can write to"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space or write elsewhere"
    return "choose another path"


def failed(path: Path, exc: OSError, what: str = "write") -> OutputError:
    """The one-line error for an OSError met while writing `path` (chain it as the cause)."""
    return OutputError(f"cannot {what} {path}: {_reason(exc)} ({_hint(exc)})")


def check(path: Path, *, force: bool) -> None:
    """Refuse, before any work is done, an output that is a folder, or an existing file
    without `force`. Devices and pipes pass: they are written to, not replaced."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        if isinstance(exc, NotADirectoryError):
            raise failed(path, exc) from exc
        return  # the write itself will say what is wrong
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a folder (give a file name inside it)")
    if stat.S_ISREG(mode) and not force:
        raise OutputError(f"{path} exists: pass --force to overwrite it, or choose another "
                          "path")


def write(path: Path, content: str | bytes, *, force: bool = False) -> None:
    """Write `content` to `path` under the rule above (check first: `check`)."""
    write_all({path: content}, force=force)


def write_all(files: Mapping[Path, str | bytes], *, force: bool = False) -> None:
    """Write several files: all are checked before the first is written."""
    for path in files:
        check(path, force=force)
    for path, content in files.items():
        _write_one(path, content.encode() if isinstance(content, str) else content, force)


def _write_one(path: Path, data: bytes, force: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failed(path.parent, exc, "create the folder") from exc
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode and not stat.S_ISREG(mode):
        # a device or a pipe: write into it as it is
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise failed(path, exc) from exc
        return
    # a regular file: write a hidden sibling, then rename it over the target, so the target is
    # either the old file or the whole new one
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if force:
            os.replace(temp, path)
        else:
            _link_new(temp, path)
    except OutputError:
        raise
    except OSError as exc:
        raise failed(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _link_new(temp: Path, path: Path) -> None:
    """Give `temp` the name `path` only if no file has it (one made since `check` included)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise OutputError(f"{path} exists: pass --force to overwrite it, or choose another "
                          "path") from None
    except OSError:
        # a file system without hard links: open exclusively instead
        with open(path, "xb") as f, open(temp, "rb") as src:
            f.write(src.read())


def new_folder(path: Path) -> None:
    """Create `path` (and parents) as a private folder, or accept an existing folder; a file
    in its place or a refusal is an OutputError."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot create the folder {path}: a file of that name exists "
                          "(give a folder)")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise failed(path, exc, "create the folder") from exc
