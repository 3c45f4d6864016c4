"""The ``tensorzip`` command: one module per command group, all thin over the public API.

``main`` dispatches; ``common`` holds what every group needs (progress, output names,
error reporting). No module of the library imports this package.
"""

from .main import main

__all__ = ["main"]
