"""Information measures: how many bytes the information in a tensor needs under a model."""

from .entropy import TensorBounds, tensor_bounds

__all__ = ["TensorBounds", "tensor_bounds"]
