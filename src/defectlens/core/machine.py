"""The machine and library versions that every result records (bundles, evaluations, benchmarks)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from defectlens.core.version import __version__

#: Libraries whose versions a result depends on; those not installed are left out.
LIBRARIES = ("numpy", "torch", "torchvision", "onnx", "onnxruntime", "openvino", "scikit-learn", "pillow")
#: The libraries that can run a model, in the order ``defectlens --version`` lists those installed.
RUNTIMES = ("onnxruntime", "openvino", "torch")


def versions() -> dict[str, str]:
    """defectlens, Python and every installed library of :data:`LIBRARIES`, read without importing them."""
    out = {"defectlens": __version__, "python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def version_report() -> str:
    """What ``defectlens --version`` prints: this version, the Python running it and the installed runtimes.

    Example:
        >>> version_report().splitlines()[0].startswith("defectlens ")
        True
    """
    found = versions()
    runtimes = ", ".join(f"{name} {found[name]}" for name in RUNTIMES if name in found)
    return f"defectlens {__version__} (Python {found['python']})\nruntimes: {runtimes or 'none installed'}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, load average now, platform and library versions."""
    try:
        load: Any = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on every platform
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": load,
        "platform": platform.platform(),
        "versions": versions(),
    }
