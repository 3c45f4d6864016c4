"""The structure of a PyTorch checkpoint's pickle (``data.pkl``), read without running any of it.

A training checkpoint nests model and optimizer state dicts (with int keys), tuples, numbers
and RNG states. To code its storages and keep everything else as it is, tensorzip needs to
know, for each storage of the zip, its dtype and the tensors that view it (their paths in
the nested structure, offsets, shapes and strides). ``inspect_pickle`` reads that with an
unpickler whose ``find_class`` never imports anything: every global the pickle names becomes
an inert ``Named`` placeholder, every call to it a ``Call`` record of its arguments. No code
of the file runs, whatever it holds. (Whether torch itself would load the file is checked
separately, with ``torch.load(weights_only=True)``: ``torch_zip.py``.)
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputFileError

# torch's storage classes (GLOBAL torch FloatStorage, ...) -> tensorzip dtype names.
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
# torch dtypes named in a pickle (GLOBAL torch float8_e4m3fn) that tensorzip codes.
TORCH_DTYPES = frozenset({"float32", "float64", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int64",
                          "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool"})
_REBUILD_TENSOR = frozenset({"_rebuild_tensor_v2", "_rebuild_tensor_v3"})
_REBUILD_PARAMETER = frozenset({"_rebuild_parameter", "_rebuild_parameter_with_state"})


@dataclass(frozen=True)
class Named:
    """A global the pickle names (``module.name``), never imported."""

    module: str
    name: str

    def __call__(self, *args: Any) -> Call:
        return Call(self, args)


@dataclass(eq=False)
class Call:
    """A call the pickle asks for (REDUCE), recorded and never made; takes whatever the
    pickle then does to the result (BUILD state, SETITEMS, APPENDS)."""

    target: Named
    args: tuple[Any, ...]
    state: Any = None
    items: dict[Any, Any] = field(default_factory=dict)
    appended: list[Any] = field(default_factory=list)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.appended.append(value)

    def extend(self, values: Any) -> None:
        self.appended.extend(values)


@dataclass(frozen=True)
class StorageRef:
    """A storage of the zip (its record ``data/<key>``) as the pickle refers to it."""

    key: str
    type_name: str  # "FloatStorage", "UntypedStorage", ...
    numel: int  # elements of its type (bytes, for an untyped storage)


@dataclass(frozen=True)
class TensorView:
    """A tensor of the checkpoint: where in the structure, and which part of which storage."""

    keys: tuple[Any, ...]  # the keys and indices that lead to it: ("optimizer", "state", 0, "exp_avg")
    storage: StorageRef
    dtype: str | None  # tensorzip's dtype name, None when tensorzip does not code it
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def path(self) -> str:
        """The keys joined by dots: "optimizer.state.0.exp_avg"."""
        return ".".join(map(str, self.keys))

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def is_contiguous(self) -> bool:
        """Its elements lie in order, without gaps (C order)."""
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


@dataclass
class PickleStructure:
    """What ``inspect_pickle`` found: the tensors in pickle order, storages referred to by
    no tensor (saved as storages), and the top-level entries that hold no tensor."""

    tensors: list[TensorView]
    bare_storages: list[tuple[tuple[Any, ...], StorageRef]]
    top_level: list[Any]  # the root's keys (empty for a root that is not a dict)

    def storages(self) -> dict[str, StorageRef]:
        found: dict[str, StorageRef] = {}
        for view in self.tensors:
            found.setdefault(view.storage.key, view.storage)
        for _, ref in self.bare_storages:
            found.setdefault(ref.key, ref)
        return found


class _Inspector(pickle.Unpickler):
    def __init__(self, data: bytes, where: str):
        super().__init__(io.BytesIO(data))
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        return Named(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], Named)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            return StorageRef(pid[2], pid[1].name, pid[4])
        raise InputFileError(f"{self.where}: the pickle refers to a storage as {str(pid)[:100]!r}, not as torch.save "
                             "writes it")


def inspect_pickle(data: bytes, where: str) -> PickleStructure:
    """The tensors and storages of a torch.save pickle (see the module)."""
    try:
        root = _Inspector(data, where).load()
    except InputFileError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a malformed pickle raises, the file is refused
        raise InputFileError(f"{where}: its data.pkl does not parse as a pickle ({type(error).__name__}: "
                             f"{str(error)[:120]})") from None
    tensors: list[TensorView] = []
    bare: list[tuple[tuple[Any, ...], StorageRef]] = []
    for keys, value in _walk(root, (), 0):
        if isinstance(value, StorageRef):
            bare.append((keys, value))
        else:
            tensors.append(_view(keys, value, where))
    top = list(_entries(root)) if _is_mapping(root) else []
    return PickleStructure(tensors, bare, top)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, Call) and value.target == Named("collections", "OrderedDict"))


def _entries(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else value.items


def _walk(value: Any, path: tuple[Any, ...], depth: int) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every tensor (a rebuild call) and bare storage, with its path, in pickle order."""
    if depth > 200:
        return  # a structure nested this deep holds no checkpoint; its storages stay bytes
    if isinstance(value, StorageRef):
        yield path, value
        return
    if isinstance(value, Call):
        if value.target.module == "torch._utils" and value.target.name in _REBUILD_TENSOR:
            yield path, value
            return
        if value.target.module == "torch._utils" and value.target.name in _REBUILD_PARAMETER and value.args:
            yield from _walk(value.args[0], path, depth + 1)
            return
        children: list[tuple[Any, Any]] = [*value.items.items(), *enumerate(value.appended)]
        if not children:
            children = list(enumerate(value.args))
    elif isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, (list, tuple)):
        children = list(enumerate(value))
    else:
        return
    for key, child in children:
        yield from _walk(child, (*path, key), depth + 1)


def _view(keys: tuple[Any, ...], call: Call, where: str) -> TensorView:
    """A ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` or ``_v3(..., dtype)`` call."""
    args = call.args
    shape = _int_tuple(args[2]) if len(args) >= 4 else None
    stride = _int_tuple(args[3]) if len(args) >= 4 else None
    if (shape is None or stride is None or len(shape) != len(stride) or not isinstance(args[0], StorageRef)
            or not isinstance(args[1], int) or isinstance(args[1], bool) or args[1] < 0):
        raise InputFileError(f"{where}: tensor {'.'.join(map(str, keys))!r} is rebuilt from arguments torch.save "
                             "does not write")
    storage = args[0]
    dtype = STORAGE_DTYPES.get(storage.type_name)
    if call.target.name == "_rebuild_tensor_v3":
        given = args[6] if len(args) >= 7 else None
        dtype = given.name if isinstance(given, Named) and given.module == "torch" and given.name in TORCH_DTYPES \
            else None
    return TensorView(keys, storage, dtype, args[1], shape, stride)


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, Call) and value.target == Named("torch", "Size") and value.args:
        value = value.args[0]
    if isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return value
    return None
