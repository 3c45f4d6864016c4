"""Writing an output file so that it either appears whole or not at all.

Bytes go to a hidden temporary file next to the target; only after they are
flushed and fsync'd does a rename put them in place. Any failure (an exception,
a full disk, a kill) leaves the target as it was and removes the temporary file
(a killed process can leave the hidden ``.NAME.*.partial`` file, never a partial
target).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .. import _native
from ..errors import OutputFileError, TensorzipError


def _umask() -> int:
    """The process umask, so outputs get the permissions an ordinary write would give
    (temporary files are created 0600). Read from /proc where possible: setting and
    restoring the umask to read it is not safe while other threads create files."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (the same path, a hard or a symbolic link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def is_within(path: str, folder: str) -> bool:
    """Whether the (resolved) ``path`` is ``folder`` or lies inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_output_over_inputs(target: Any, *inputs: Any, folder: bool = False) -> None:
    """The one rule for what an output may replace: not any input of the operation by any
    name (the same path, a hard or symbolic link to it; bases deeper in a chain, query and
    calibration files count as inputs); a folder output (which replaces what is there
    whole) may not hold an input, and nothing is written inside an input folder.
    ``inputs`` may hold ``None`` and streams, which are skipped."""
    if not isinstance(target, (str, os.PathLike)):
        return
    out = os.path.realpath(target)
    for given in inputs:
        if not isinstance(given, (str, os.PathLike)):
            continue
        inside = os.path.realpath(given)
        if (same_file(target, given) or (folder and is_within(inside, out))
                or (os.path.isdir(given) and is_within(out, inside))):
            raise OutputFileError(f"output {target} would overwrite or sit inside the input {given}; "
                                  "write it elsewhere (choose another -o)")


def _refuse_special(target: Path) -> None:
    """--force replaces regular files (and folders of ours), never a device node, FIFO or socket:
    renaming over /dev/null as root would put a regular file in its place."""
    try:
        mode = target.lstat().st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise OutputFileError(f"cannot write {target}: it is not a regular file (a device, FIFO or socket); "
                              "tensorzip replaces only regular files, even with --force")
    if stat.S_ISLNK(mode):
        try:
            resolved = target.resolve(strict=True)
        except (OSError, RuntimeError):  # a loop, or a link to nothing: there is no special file behind it
            raise OutputFileError(f"cannot write {target}: a symbolic link that loops or leads nowhere; remove it "
                                  "or choose another output") from None
        _refuse_special(resolved)


def _refuse_unusable_name(target: Path) -> None:
    """A name the system cannot hold (over 255 bytes, a link loop, a file where a folder
    should be) is said as an output error naming it, not an OSError from the first stat."""
    try:
        target.lstat()
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputFileError(f"cannot write {target}: {error.strerror or error}") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[BinaryIO]:
    target = Path(path)
    _refuse_unusable_name(target)
    _refuse_special(target)
    if target.is_dir():
        raise OutputFileError(f"cannot write {target}: it is a directory")
    if not overwrite and target.exists():
        raise OutputFileError(f"{target} already exists (use --force / overwrite=True to replace it)")
    remove_abandoned_temporaries(target)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while we live: marks it as not abandoned
    except OSError as error:
        raise OutputFileError(f"cannot write {target}: {error.strerror or error}") from None
    with _discarded_on_failure(target, lambda: os.unlink(temporary)), os.fdopen(fd, "w+b") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        if overwrite:
            os.replace(temporary, target)
        else:
            _commit_new(temporary, target)


def _commit_new(temporary: str, target: Path) -> None:
    """Put the finished file at ``target`` only if nothing is there now: the check before
    writing does not cover a file that appeared meanwhile (two commands writing one name at
    once), so the commit itself refuses to replace one (a hard link fails on an existing
    name; where the file system has no hard links, checked just before the rename)."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise OutputFileError(f"{target} already exists: it appeared while this ran (use --force to replace "
                              "it)") from None
    except OSError:  # no hard links here (FAT, some network file systems)
        if os.path.lexists(target):
            raise OutputFileError(f"{target} already exists: it appeared while this ran (use --force to replace "
                                  "it)") from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


@contextlib.contextmanager
def _discarded_on_failure(target: Path, discard: Callable[[], None], temporary: Path | None = None) -> Iterator[None]:
    """Run ``discard`` (best effort) if the block fails; OS errors become OutputFileError.
    An OutputFileError naming a file inside the ``temporary`` folder names it where it was to be."""
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(OSError):
            discard()
        if isinstance(error, OSError) and not isinstance(error, TensorzipError):
            raise OutputFileError(f"writing {target} failed: {error.strerror or error}") from error
        if temporary is not None and isinstance(error, OutputFileError) and str(temporary) in str(error):
            raise OutputFileError(str(error).replace(str(temporary), str(target))) from error
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """A directory that appears whole or not at all: files go into a hidden temporary
    directory beside ``path``, renamed into place when the block succeeds. An existing
    target is replaced only then (with ``overwrite``)."""
    target = Path(path)
    _refuse_unusable_name(target)
    _refuse_special(target)
    if target.exists() and not target.is_dir():
        raise OutputFileError(f"cannot write the folder {target}: a file of that name exists")
    if not overwrite and target.exists():
        raise OutputFileError(f"{target} already exists (use --force / overwrite=True to replace it)")
    remove_abandoned_temporaries(target)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        lock = os.open(temporary, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        raise OutputFileError(f"cannot write {target}: {error.strerror or error}") from None
    stack = contextlib.ExitStack()
    stack.callback(os.close, lock)
    with stack, _discarded_on_failure(target, lambda: shutil.rmtree(temporary, ignore_errors=True), temporary):
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())
        if target.exists():
            _refuse_losing_files(target, temporary)
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(temporary, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, target)


def _refuse_losing_files(target: Path, replacement: Path) -> None:
    """--force may replace an existing folder's files with new ones of the same name, never
    delete a file the new folder does not have (a user's notes in the output folder)."""
    kept = {p.relative_to(replacement) for p in replacement.rglob("*")}
    lost = sorted(str(p.relative_to(target)) for p in target.rglob("*")
                  if p.relative_to(target) not in kept and not (p.is_dir() and any(p.iterdir())))
    if lost:
        shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        raise OutputFileError(f"{target} already exists and holds {shown}, which the new folder would not: "
                              "tensorzip never deletes files it did not write; move them away or choose another -o")


def remove_abandoned_temporaries(target: Path) -> list[str]:
    """Remove the hidden ``.NAME.XXXXXXXX.partial`` files and folders a killed run (SIGKILL,
    a crash, a power cut) left beside ``target``; returns their names. A writer holds an
    exclusive lock on its temporary for as long as it lives, and the kernel drops the lock
    with the process, so a temporary whose lock can be taken is abandoned, and one that is
    locked belongs to a live writer (another run, now) and is left alone."""
    pattern = re.compile(r"\." + re.escape(target.name) + r"\.[A-Za-z0-9_]{8}\.partial")
    removed = []
    try:
        candidates = [entry for entry in os.scandir(target.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
            if not is_folder and not entry.is_file(follow_symlinks=False):
                continue  # not something we write (a link, a FIFO): never touched
            fd = os.open(entry.path, os.O_RDONLY | (os.O_DIRECTORY if is_folder else 0) | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            if is_folder:
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class WriteBack:
    """Write-back advice for a file being written in large batches (see
    ``_native.start_writeback``): each batch just written is sent to the device at once,
    so the closing fsync waits for the last batch, not the whole file. Nothing for pipes
    and in-memory streams."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._number: int | None = None
        try:
            number = handle.fileno()
            if stat.S_ISREG(os.fstat(number).st_mode):
                self._number = number
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass

    def written(self, nbytes: int) -> None:
        """The ``nbytes`` just written end at the handle's position."""
        if self._number is not None and nbytes > 0:
            _native.start_writeback(self._number, self._handle.tell() - nbytes, nbytes)
