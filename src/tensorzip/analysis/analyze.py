"""``tensorzip analyze``'s entry point: a checkpoint or a representation matrix in,
one JSON-ready record out (rendered by ``report_html``, printed by the CLI)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..container.kinds import Kind, identify, load_npy
from ..embeddings import open as open_collection
from ..errors import InputFileError
from .representations import analyze_representations
from .weights import DEFAULT_EXACT_ELEMENTS, ProgressCallback, analyze_checkpoint


def analyze(path: str | os.PathLike[str], *, labels: str | os.PathLike[str] | np.ndarray | None = None,
            threads: int | None = None, exact_elements: int = DEFAULT_EXACT_ELEMENTS,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Analyse ``path``: a ``.npy`` matrix (rows = samples) or an embedding collection as
    representations; a checkpoint of any kind (.safetensors, PyTorch, .tzip, a model folder,
    compressed or not) as a checkpoint. KV caches and lossy weights are refused by name."""
    from .. import __version__

    path = Path(path)
    found = identify(path)
    if found.kind in (Kind.NUMPY, Kind.EMBEDDINGS):  # an embedding collection: its decoded vectors
        if isinstance(labels, (str, os.PathLike)):
            labels = np.asarray(load_npy(labels, "labels"))
        matrix = (load_npy(path, "representation matrix") if found.kind is Kind.NUMPY
                  else open_collection(path, threads=threads).decode())
        measures = analyze_representations(matrix, labels, progress=progress)
        record: dict[str, Any] = {"tensorzip_analysis": 1, "kind": "representations", "source": str(path),
                                  "notes": list(measures.get("notes", [])), "representations": measures}
    else:
        if labels is not None:
            raise InputFileError("--labels goes with a representation matrix (.npy), not a checkpoint")
        record = analyze_checkpoint(path, threads=threads, exact_elements=exact_elements, progress=progress)
    record["generated"] = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    record["tensorzip_version"] = __version__
    return record
