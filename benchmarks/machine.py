"""One-line description of the machine, so every result file says where it was measured."""

import os
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else 'unknown CPU'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def describe() -> str:
    """CPU model and the number of cores this process may use."""
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores"


def package_version(package: str) -> str:
    """The installed version of ``package``, for the tables' machine lines."""
    from importlib.metadata import version

    return version(package)
