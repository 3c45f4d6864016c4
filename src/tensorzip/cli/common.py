"""What every command group shares: the progress bar, output names, sizes in MB."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import OutputFileError
from ..outputs.atomic import same_file


@contextmanager
def progress_bar(label: str, enabled: bool, unit: str = "B") -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    bar = tqdm(total=0, unit=unit, unit_scale=unit == "B", desc=label, leave=False, disable=None, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def output_path(given: str | None, source: str, suffix: str, force: bool, *, folder: bool = False) -> Path:
    """Where a command writes: ``given`` (-o) or the input's name with ``suffix``; refused
    when it is the input, exists without --force, or is something --force cannot replace (a
    folder where a file goes, a device). ``folder``: the output is a folder."""
    if given == "-":  # only `decompress` streams (it handles -o - before asking for a path)
        raise OutputFileError("-o - (standard output) is for tensorzip decompress of a checkpoint; name an "
                              "output file")
    path = Path(given) if given else _default_output(Path(source), suffix)
    try:
        if path.resolve() == Path(source).resolve() or same_file(path, source):  # a hard link too
            raise OutputFileError(f"output {path} would overwrite the input; choose another -o")
        exists = path.exists()
        is_folder, is_file = path.is_dir(), path.is_file()
    except (OSError, RuntimeError) as error:  # a name over 255 bytes, a link loop
        reason = "a symbolic link that loops" if isinstance(error, RuntimeError) else error.strerror or error
        raise OutputFileError(f"cannot write {path}: {reason}") from None
    if exists and not folder and is_folder:
        raise OutputFileError(f"{path} is a folder; name the output file (e.g. -o {path / Path(source).name}"
                              f"{suffix if not given else ''})")
    if exists and not folder and not is_file:
        raise OutputFileError(f"{path} is not a regular file (a device or a pipe): tensorzip writes a file whole "
                              "and renames it into place; name a file, or use -o - with tensorzip decompress")
    if exists and not force:
        raise OutputFileError(f"{path} already exists (use --force to replace it)")
    return path


def _default_output(source: Path, suffix: str) -> Path:
    """The input's name with ``suffix``: ``x.safetensors.tzip`` restores to ``x.safetensors``
    (not ``x.safetensors.safetensors``)."""
    if suffix and source.suffix == ".tzip" and source.stem.endswith(suffix):
        return source.with_suffix("")
    return source.with_suffix(suffix)


def megabytes(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def number_in(kind: type, low: float, high: float, *, low_open: bool = False, flag: str = "") -> Any:
    """An argparse type: a number of ``kind`` in [low, high] (or (low, high]); the error names
    the flag and the range, in CLI words."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if value != value or value > high or value < low or (low_open and value == low):  # NaN too
            opening = "(" if low_open else "["
            shown = [f"{bound:,}" if kind is int else f"{bound:g}" for bound in (low, high)]
            raise argparse.ArgumentTypeError(f"{text} is outside {opening}{shown[0]}, {shown[1]}]"
                                             + (f" ({flag})" if flag else ""))
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
