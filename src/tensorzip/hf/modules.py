"""Weights into a torch module that exists already: ``load_into(model, path)``.

This is the big-model path of accelerate and diffusers: the model is built without memory
(``accelerate.init_empty_weights()`` or the meta device), then each tensor is decoded and
put in place, so the whole state dict never exists beside the model. A parameter that already
has CPU memory of the right dtype gets the decoded bytes written straight into it (no
temporary tensor at all); one on the meta device is replaced by the freshly decoded tensor.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputFileError
from ..inputs.frameworks import to_numpy, to_torch
from ..inputs.torch_file import import_torch
from .weights import Weights


def load_into(model: Any, path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
              threads: int | None = None, strict: bool = True, device: Any = "cpu") -> Any:
    """Fill ``model``'s parameters and persistent buffers from the checkpoint at ``path`` (any
    kind ``tensorzip.hf.safetensors.safe_open`` reads); returns ``model``. ``strict``: every
    state-dict entry of the model must be in the checkpoint with its shape, and nothing else.
    ``device``: where tensors that were on the meta device are put."""
    torch = import_torch("tensorzip.hf.load_into")
    targets = model.state_dict(keep_vars=True)
    with Weights(path, base=base, threads=threads) as weights:
        missing = [name for name in targets if name not in weights.tensors]
        unexpected = [name for name in weights.tensors if name not in targets]
        if strict and (missing or unexpected):
            raise InputFileError(f"{path}: does not match {type(model).__name__}: "
                                 f"{_few('missing', missing)}{'; ' if missing and unexpected else ''}"
                                 f"{_few('unexpected', unexpected)} (strict=False loads what matches)")
        direct: list[tuple[str, Any]] = []
        assigned: list[str] = []
        for name in (n for n in weights.tensors if n in targets):
            target, lazy = targets[name], weights.tensors[name]
            if tuple(target.shape) != tuple(lazy.get_shape()):
                raise InputFileError(f"{path}: tensor {name!r} has shape {lazy.get_shape()}, the model's "
                                     f"{list(target.shape)}")
            writable = (not target.is_meta and target.device.type == "cpu" and target.is_contiguous()
                        and target.dtype == lazy.dtype)
            (direct.append((name, target)) if writable else assigned.append(name))
        with torch.no_grad():
            if direct:  # decoded straight into the parameters' memory
                weights.read_into([(name, to_numpy(target.detach())) for name, target in direct])
            for name, array in weights.read_all(assigned):
                _replace(model, name, to_torch(array), targets[name], device)
    return model


def _replace(model: Any, name: str, value: Any, old: Any, device: Any) -> None:
    torch = import_torch("tensorzip.hf.load_into")
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    place = device if old.is_meta else old.device
    value = value.to(device=place, dtype=old.dtype) if (old.dtype != value.dtype or str(place) != "cpu") else value
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=old.requires_grad)
    else:
        owner._buffers[leaf] = value


def _few(what: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} {what} ({shown})"
