"""diffusers pipelines from compressed model folders.

A pipeline folder holds one subfolder per component (``unet/``, ``vae/``, ``text_encoder/``,
``scheduler/``, ``tokenizer/``) and ``model_index.json`` naming each component's library and
class. ``pipeline_from_pretrained(PipelineClass, path, **kwargs)`` loads every component whose
subfolder ``tensorzip compress`` compressed (its .tzip shards) itself: diffusers models are
built without memory (``accelerate.init_empty_weights``) and filled by ``load_into``,
transformers models go through ``tensorzip.hf.transformers.from_pretrained``. The components
are then handed to ``PipelineClass.from_pretrained``, which loads the rest (schedulers,
tokenizers, uncompressed models) as it always does.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputFileError, TensorzipError
from .modules import load_into
from .transformers import from_pretrained as transformers_from_pretrained

MODEL_INDEX = "model_index.json"


def pipeline_from_pretrained(pipeline_cls: Any, path: str | os.PathLike[str], *,
                             threads: int | None = None, **kwargs: Any) -> Any:
    """``pipeline_cls.from_pretrained(path, **kwargs)`` where components may be compressed.
    ``torch_dtype`` (or ``dtype``) applies to the components loaded here too."""
    root = Path(path)
    index_path = root / MODEL_INDEX
    if not index_path.is_file():
        raise InputFileError(f"{root}: no {MODEL_INDEX}, so not a diffusers pipeline folder")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputFileError(f"{index_path}: not readable JSON ({error})") from None
    dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or name in kwargs or not (isinstance(spec, list) and len(spec) == 2):
            continue
        folder = root / name
        if not (folder.is_dir() and any(p.suffix == ".tzip" for p in folder.iterdir())):
            continue  # not compressed here: diffusers loads it
        library, class_name = spec
        components[name] = _component(str(library), str(class_name), folder, dtype, threads)
    try:
        return pipeline_cls.from_pretrained(root, **components, **kwargs)
    except TensorzipError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise InputFileError(f"{root}: diffusers could not assemble {pipeline_cls.__name__}: {error}") from None


def _component(library: str, class_name: str, folder: Path, dtype: Any, threads: int | None) -> Any:
    try:
        cls = getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError):
        raise InputFileError(f"{folder}: its component class {library}.{class_name} is not installed") from None
    if library == "transformers":
        extra = {"dtype": dtype} if dtype is not None else {}
        return transformers_from_pretrained(cls, folder, threads=threads, **extra)
    try:
        from accelerate import init_empty_weights
    except ImportError:
        raise TensorzipError("loading diffusers models needs accelerate: pip install accelerate") from None
    try:
        config = cls.load_config(folder)
    except (OSError, ValueError) as error:
        raise InputFileError(f"{folder}: its config does not load: {error}") from None
    with init_empty_weights():
        model = cls.from_config(config)
    load_into(model, folder, threads=threads)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()
