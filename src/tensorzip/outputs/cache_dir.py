"""Where tensorzip keeps what it can make again (the sample model, remembered base pins):
one place, so a user who moves it (``$TENSORZIP_CACHE``) moves all of it."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$TENSORZIP_CACHE``, else ``~/.cache/tensorzip``."""
    configured = os.environ.get("TENSORZIP_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "tensorzip"
