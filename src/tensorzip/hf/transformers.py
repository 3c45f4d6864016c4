"""Hugging Face transformers models straight from what ``tensorzip compress`` writes.

``from_pretrained(cls, path, **kwargs)`` loads a compressed model folder (``DIR.tzip/``, one
shard or many), a folder archive (``compress DIR --archive``), a single .tzip (with
``config=``), or anything transformers reads itself, into ``cls`` (``AutoModel``,
``BertModel``, ...), with every ``from_pretrained`` argument (``dtype``, ``device_map``,
``attn_implementation``, ...) passed through. The tensors go to transformers as lazy
safetensors-style slices (``state_dict=``), so transformers builds the model on the meta
device and each tensor is decoded once, when its parameter is set: no state dict is held
beside the model.

Measured choice: a context manager that makes unchanged code read .tzip would have to
patch transformers' private file resolution, which changes between releases; ``state_dict=``
with slices is public API of transformers 5 and goes through its own loading path
(dtype plans, tied weights, device maps).
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputFileError, TensorzipError
from ..inputs.sources import is_url
from .weights import Weights

# from_pretrained arguments about loading, not about the config (the rest may update the config).
LOADING_KWARGS = frozenset({
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "offload_buffers", "low_cpu_mem_usage",
    "ignore_mismatched_sizes", "key_mapping", "tp_plan", "tp_size", "device_mesh", "weights_only", "use_kernels",
    "kernel_config", "quantization_config", "attn_implementation", "distributed_config", "trust_remote_code",
    "use_safetensors", "variant", "revision", "cache_dir", "force_download", "local_files_only", "token",
    "proxies", "subfolder", "adapter_kwargs", "adapter_name", "generation_config", "tqdm_class",
})
CONFIG_NAME = "config.json"


def import_transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise TensorzipError("loading into transformers needs it: pip install 'tensorzip[hf]'") from None


def from_pretrained(cls: Any, path: str | os.PathLike[str], *model_args: Any,
                    base: str | os.PathLike[str] | None = None, threads: int | None = None, strict: bool = True,
                    **kwargs: Any) -> Any:
    """``cls.from_pretrained(path, **kwargs)`` for compressed checkpoints (see the module).

    ``base``: the checkpoint a fine-tune was coded against, when it is not beside it.
    ``strict``: refuse weights that leave parameters of the model unset or of another shape
    (a shard of another model, a config that does not match); ``strict=False`` for a new head
    on a base model, as transformers does (it then initializes what is missing).
    """
    import_transformers()
    where = str(path)
    wants_info = kwargs.pop("output_loading_info", False)
    with Weights(path, base=base, threads=threads) as weights:
        weights.decode_ahead()  # decoded in native threads while the config loads and transformers builds
        config = kwargs.pop("config", None)
        if config is None or isinstance(config, (str, os.PathLike)):
            config, kwargs = _load_config(cls, where, weights, config, kwargs)
        model_class = _concrete_class(cls, config)
        try:
            model, info = model_class.from_pretrained(None, *model_args, config=config, state_dict=weights.tensors,
                                              output_loading_info=True, **kwargs)
        except TensorzipError:
            raise
        except (RuntimeError, ValueError, KeyError, OSError, TypeError) as error:
            raise InputFileError(f"{where}: transformers could not load these weights into "
                                 f"{getattr(cls, '__name__', cls)}: {error}") from None
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or ())
    if strict and (missing or mismatched):
        what = []
        if missing:
            what.append(f"{len(missing)} parameters have no tensor ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''})")
        if mismatched:
            what.append(f"{len(mismatched)} have another shape ({', '.join(mismatched[:3])})")
        raise InputFileError(f"{where}: these weights do not fit {type(model).__name__} as its config describes it: "
                             f"{'; '.join(what)}. Wrong config or a shard of another model? (strict=False loads "
                             "anyway and lets transformers initialize what is missing, e.g. a new head)")
    return (model, info) if wants_info else model


def _concrete_class(cls: Any, config: Any) -> Any:
    """The model class an ``AutoModel...`` class picks for ``config`` (the auto classes want a
    path to look at; the state-dict path of the concrete class does not)."""
    mapping = getattr(cls, "_model_mapping", None)
    if mapping is None:
        return cls
    try:
        return mapping[type(config)]
    except KeyError:
        raise InputFileError(f"{cls.__name__} has no model class for a {type(config).__name__}; use the model's own "
                             "class") from None


def _load_config(cls: Any, where: str, weights: Weights, given: Any,
                 kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The config (from the folder, the archive's kept config.json, or the path given), and
    the kwargs left for the model: those of ``kwargs`` that are not config attributes."""
    transformers = import_transformers()
    config_class = getattr(cls, "config_class", None) or transformers.AutoConfig
    loading = {k: v for k, v in kwargs.items() if k in LOADING_KWARGS}
    config_kwargs = {k: v for k, v in kwargs.items() if k not in LOADING_KWARGS}
    with tempfile.TemporaryDirectory(prefix="tensorzip-config-") as scratch:
        folder = _config_folder(where, weights, given, Path(scratch))
        try:
            config, unused = config_class.from_pretrained(folder, return_unused_kwargs=True, **config_kwargs)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            raise InputFileError(f"{where}: its config ({folder}/{CONFIG_NAME}) does not load: {error}") from None
    return config, {**loading, **unused}


def _config_folder(where: str, weights: Weights, given: Any, scratch: Path) -> str:
    if given is not None:
        return str(given)
    if not is_url(where) and os.path.isdir(where):
        if not os.path.isfile(os.path.join(where, CONFIG_NAME)):
            raise InputFileError(f"{where}: no {CONFIG_NAME} in the folder; pass config= (a config object, or the "
                                 "folder of the original model)")
        return where
    kept = weights.kept_file(CONFIG_NAME)
    if kept is None:
        held = "a folder archive without a config.json" if weights.archive is not None else "only tensors"
        raise InputFileError(f"{where}: {held}, so the model's config is not in it; pass config= (a config "
                             "object, or the folder of the original model), or compress the whole model folder "
                             "(tensorzip compress DIR, or --archive for one file)")
    (scratch / CONFIG_NAME).write_bytes(kept)
    return str(scratch)
