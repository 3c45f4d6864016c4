"""Where users load models: safetensors' reader API, transformers and diffusers, and any torch
module, reading what ``tensorzip compress`` writes (local or at an fsspec URL).

- ``tensorzip.hf.safetensors``: ``safe_open`` / ``load_file`` / ``load`` with safetensors'
  signatures, for .tzip and .safetensors alike;
- ``tensorzip.hf.transformers.from_pretrained(cls, path, **kwargs)``;
- ``tensorzip.hf.diffusers.pipeline_from_pretrained(PipelineClass, path, **kwargs)``;
- ``tensorzip.hf.load_into(model, path)``: into a model built empty (accelerate's big-model
  loading).

transformers, diffusers, accelerate and torch are imported only when used.
"""

from .modules import load_into
from .weights import LazyTensor, Weights, open_weights

__all__ = ["LazyTensor", "Weights", "load_into", "open_weights"]
