"""Walking a folder the way every folder command reads one: every subfolder and file, in one
fixed order, with sizes and permission bits.

One walk serves the compressed-folder layout (``folders.py``) and the archive
(``inputs/shards.py``), so both agree on what "every file of the folder" means:

- a symbolic link to a *file* is read through (the Hugging Face cache's snapshot folders
  are all links into ``../../blobs``); it is restored as a regular file;
- a symbolic link to a *folder* is refused (following it could loop, or read a tree far
  larger than the one the user named);
- broken links, FIFOs, sockets and devices are refused: they hold no bytes to keep.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError

PERMISSION_BITS = 0o777  # what is kept of a mode: no setuid/setgid/sticky bits are ever restored


@dataclass(frozen=True)
class TreeFile:
    path: str  # relative to the root, POSIX separators
    size: int
    mode: int  # permission bits (of the file a link points to)
    link_target: str | None = None  # for a symbolic link: the real path of the file it names


@dataclass
class Tree:
    root: Path
    folders: list[tuple[str, int]] = field(default_factory=list)  # (relative path, permission bits), parents first
    files: list[TreeFile] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def refuse_links_leaving(self, doing: str) -> None:
        """A folder tensorzip made holds no links; one that leads outside it would copy any file
        of the machine into the output (``doing``: what is being done, for the message)."""
        inside = os.path.realpath(self.root)
        for item in self.files:
            if item.link_target is not None and os.path.commonpath([inside, item.link_target]) != inside:
                raise InputFileError(f"{self.root / item.path}: a symbolic link to {item.link_target}, outside the "
                                     f"folder; {doing} never follows a link out of the folder it reads")


def walk_tree(root: str | os.PathLike[str]) -> Tree:
    """Every subfolder and file of ``root``, sorted by name at each level."""
    base = Path(root)
    if not base.exists():
        raise InputFileError(f"{base}: no such folder")
    if not base.is_dir():
        raise InputFileError(f"{base}: not a folder")
    tree = Tree(base)

    def failed(error: OSError) -> None:
        raise InputFileError(f"{base}: cannot read {error.filename} ({error.strerror or error})")

    for here, folders, names in os.walk(base, onerror=failed):
        folders.sort()
        relative = Path(here).relative_to(base).as_posix()
        for name in folders:
            path = os.path.join(here, name)
            if os.path.islink(path):
                raise InputFileError(f"{path}: a symbolic link to a folder; copy the folder it points to instead")
            tree.folders.append((name if relative == "." else f"{relative}/{name}",
                                 stat.S_IMODE(os.stat(path).st_mode) & PERMISSION_BITS))
        for name in sorted(names):
            path = os.path.join(here, name)
            try:
                status = os.stat(path)  # follows links
            except OSError:
                raise InputFileError(f"{path}: a broken symbolic link") from None
            if not stat.S_ISREG(status.st_mode):
                raise InputFileError(f"{path}: not a regular file (a pipe, a socket or a device)")
            tree.files.append(TreeFile(name if relative == "." else f"{relative}/{name}", status.st_size,
                                       stat.S_IMODE(status.st_mode) & PERMISSION_BITS,
                                       os.path.realpath(path) if os.path.islink(path) else None))
    return tree
