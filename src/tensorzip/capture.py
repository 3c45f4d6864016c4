"""Save what a PyTorch model computes, within an error bound, while it runs (issue 21).

    with tz.capture.activations(model, "hidden.tzip", modules=["encoder.layer.3"], max_rel_error=1e-3):
        for batch in batches:
            model(**batch)
    hidden = tz.load_file("hidden.tzip")   # {"encoder.layer.3/0": ..., "encoder.layer.3/1": ...}

Forward hooks hand each output of the chosen modules (a tensor, or the first tensor of a
tuple, as transformer layers return) to a ``TzipWriter`` as the model produces it: each is
coded with the error-bounded codec (``codecs/bounded``; the bound checked on every element)
and written with the writer's next batch, so memory holds a batch of outputs, not the run.
The file is committed when the block ends without an error; on an error nothing is left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .codecs import bounded
from .codecs.bounded import error_bound
from .container import TzipWriter
from .container.records import FRAMEWORK_KEY
from .errors import TensorzipError
from .inputs.frameworks import to_numpy
from .inputs.torch_file import import_torch

__all__ = ["activations"]


@contextmanager
def activations(model: Any, path: str | os.PathLike[str], *, modules: Sequence[str],
                max_abs_error: float | None = None, max_rel_error: float | None = None,
                threads: int | None = None) -> Iterator[dict[str, int]]:
    """Capture the outputs of ``modules`` (names as ``model.named_modules()`` gives them)
    into ``path``: tensor ``"NAME/K"`` is the K-th output of module NAME, stored within
    ``max_abs_error`` (or ``max_rel_error`` x its RMS) of the original on every element;
    without either, exactly. Yields the count of outputs captured per module."""
    import_torch("tensorzip.capture.activations")
    named = dict(model.named_modules())
    missing = [name for name in modules if name not in named]
    if missing:
        raise TensorzipError(f"no module named {', '.join(map(repr, missing))} in the model "
                             "(names as model.named_modules() gives them)")
    if not modules:
        raise TensorzipError("name at least one module to capture")
    counts = dict.fromkeys(modules, 0)
    with TzipWriter(path, metadata={FRAMEWORK_KEY: "pt"}, threads=threads) as writer:

        def hook_for(name: str) -> Any:
            def hook(_module: Any, _inputs: Any, output: Any) -> None:
                tensor = output[0] if isinstance(output, (tuple, list)) else output
                array = np.array(to_numpy(tensor.detach().cpu()))  # a copy: the model may reuse its buffer
                bound = error_bound(array, max_abs_error, max_rel_error) if array.dtype.kind == "f" or \
                    array.dtype.name == "bfloat16" else None
                codec = bounded.choose(array, bound).codec if bound is not None else None
                writer.add(f"{name}/{counts[name]}", array, codec)
                counts[name] += 1
            return hook

        handles = [named[name].register_forward_hook(hook_for(name)) for name in modules]
        try:
            yield counts
        finally:
            for handle in handles:
                handle.remove()
