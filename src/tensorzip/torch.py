"""PyTorch state dicts straight from compressed checkpoints, with no temporary file.

``load_state_dict`` reads a .tzip file, a compressed model folder (``tensorzip
compress model_dir``), or plain inputs (a .safetensors file, a model folder, a
PyTorch file loaded with ``weights_only=True``) into ``dict[str, torch.Tensor]``.
Compressed tensors are decoded into freshly allocated arrays that the returned
tensors share (``torch.from_numpy``; bfloat16 and float8 as their raw bits), so
nothing is copied after decoding. torch is imported when the function is called.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .container.format import MAGIC
from .container.kinds import open_data
from .errors import InputFileError
from .inputs.frameworks import to_torch
from .inputs.safetensors import SafetensorsFile
from .inputs.torch_file import TorchFile, import_torch, looks_like_torch_file

if TYPE_CHECKING:
    import torch

__all__ = ["load_state_dict"]


def load_state_dict(
    path: str | os.PathLike[str],
    device: str | Any = "cpu",
    *,
    threads: int | None = None,
    base: str | os.PathLike[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as a torch tensor on ``device``, by name.

    ``path``: a .tzip file (one checkpoint, or a whole-folder archive), a folder
    made by ``tensorzip compress`` (its rewritten index names the .tzip shards), a
    .safetensors file, a Hugging Face model folder, or a PyTorch file. ``base``: the
    checkpoint a .tzip was coded against, when it is not beside the file. The
    result can go straight to ``model.load_state_dict``.
    """
    torch = import_torch("tensorzip.torch.load_state_dict")
    target = torch.device(device)
    where = Path(path)
    if where.is_dir():
        from .folders import weight_files

        files = weight_files(where)
    elif where.exists():
        files = [where]
    else:
        raise InputFileError(f"{where}: no such file or folder")
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for file in files:
        for name, tensor in _tensors(file, torch, threads, base):
            if name in state:
                raise InputFileError(f"{where}: tensor {name!r} is in both {origin[name].name} and {file.name}")
            state[name] = tensor if target.type == "cpu" else tensor.to(target)
            origin[name] = file
    return state


def _tensors(file: Path, torch: Any, threads: int | None,
             base: str | os.PathLike[str] | None) -> Iterator[tuple[str, Any]]:
    with open(file, "rb") as handle:
        head = handle.read(len(MAGIC))
    if head == MAGIC:
        with open_data(file, "tensorzip.torch.load_state_dict", threads=threads, base=base) as reader:
            for name, array in reader.iter_tensors():  # fresh arrays, decoded in place
                yield name, to_torch(array)
    elif looks_like_torch_file(file):
        yield from ((name, tensor.detach()) for name, tensor in TorchFile(file).state.items())
    else:
        shard = SafetensorsFile(file)
        for entry in shard.entries:
            yield entry.name, to_torch(np.array(shard.array(entry)))  # a copy: the file's map is read-only
