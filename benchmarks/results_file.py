"""RESULTS.md is written by several benchmark scripts, each owning one section.

A section lies between ``<!-- begin:KEY -->`` and ``<!-- end:KEY -->``; a script
replaces its own section and leaves the others as they are.
"""

from pathlib import Path


def write_section(path: Path, key: str, text: str) -> None:
    begin, end = f"<!-- begin:{key} -->", f"<!-- end:{key} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = head + block + tail.lstrip("\n")
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    path.write_text(new)
