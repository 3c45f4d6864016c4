"""An in-memory file for compressing and restoring checkpoints without a disk.

Why not ``io.BytesIO``: on machines where a page fault is expensive (virtual
machines; 1.5 GB/s to fill fresh memory was measured on the benchmark VM), filling
a new buffer page by page costs as much as decoding into it. ``MemoryFile`` maps
its memory with ``MADV_POPULATE_WRITE`` where the OS has it, so the pages arrive in
one system call, as transparent huge pages where the OS allows them (first touch
1.5 -> 3-4 GB/s measured); it grows in place (``mremap``, then the same advice for
the new pages) and lets a decoder write straight into it (no copy).
"""

from __future__ import annotations

import contextlib
import mmap

from ..errors import TensorzipError

_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 0)
_MADV_POPULATE_WRITE = 23  # linux/mman.h (Linux 5.14+); Python's mmap module names it only from 3.13


def _allocate(capacity: int) -> mmap.mmap:
    if _FLAGS:
        region = mmap.mmap(-1, max(capacity, 1), flags=_FLAGS)
        _populate(region, 0, capacity)
        return region
    return mmap.mmap(-1, max(capacity, 1))


def _populate(region: mmap.mmap, start: int, end: int) -> None:
    """Map pages [start, end) in one call where the kernel can (huge pages where allowed);
    else they fault in later."""
    start -= start % mmap.PAGESIZE
    if end > start:
        # Each advice on its own: a kernel without transparent huge pages may still populate.
        if _MADV_HUGEPAGE:
            with contextlib.suppress(OSError, AttributeError, ValueError):  # older kernel, other OS
                region.madvise(_MADV_HUGEPAGE, start, end - start)
        with contextlib.suppress(OSError, AttributeError, ValueError):
            region.madvise(_MADV_POPULATE_WRITE, start, end - start)


class MemoryFile:
    """A seekable, growable binary file in memory; ``getbuffer()`` views its contents.

    >>> f = MemoryFile()
    >>> f.write(b"abc")
    3
    >>> bytes(f.getbuffer())
    b'abc'
    """

    def __init__(self, capacity: int = 0):
        self._map = _allocate(capacity)
        self._capacity = max(capacity, 1)
        self._size = 0
        self._position = 0
        self.name = "<memory>"

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` bytes (their pages mapped now)."""
        if capacity <= self._capacity:
            return
        new_capacity = max(capacity, self._capacity + self._capacity // 4)
        try:
            self._map.resize(new_capacity)  # mremap: no copy
            _populate(self._map, self._capacity, new_capacity)
        except (BufferError, OSError, SystemError):  # a view is held, or the OS cannot resize
            grown = _allocate(new_capacity)
            grown[: self._size] = self._map[: self._size]
            self._map = grown  # the old map goes when the last view of it does
        self._capacity = new_capacity

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        end = self._position + view.nbytes
        self.reserve(end)
        self._map[self._position : end] = view
        self._position = end
        self._size = max(self._size, end)
        return view.nbytes

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}.get(whence)
        if base is None or base + offset < 0:
            raise TensorzipError(f"invalid seek ({offset}, {whence})")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def truncate_to(self, size: int) -> None:
        """Declare the file's length (after writing into ``writable_view`` directly)."""
        self.reserve(size)
        self._size = size

    def writable_view(self) -> memoryview:
        """The whole mapped capacity, for decoders that write in place."""
        return memoryview(self._map)

    def getbuffer(self) -> memoryview:
        """A read-only view of the file's bytes (valid while this object lives)."""
        return memoryview(self._map)[: self._size].toreadonly()

    def __len__(self) -> int:
        return self._size
