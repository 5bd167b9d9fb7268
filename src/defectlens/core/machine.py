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
#: The x86 vector extensions the runtimes' kernels are chosen by, widest first. A virtual machine's model name can
#: stand for several generations ("AMD EPYC": Zen 3 with AVX2 only, Zen 4 with AVX-512 and BF16), and a figure's
#: speed moves with them, so every result names them beside the model.
VECTOR_FLAGS = ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2")


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


def _cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_features(cpuinfo: str | None = None) -> dict[str, Any]:
    r"""The CPU's family, model and stepping numbers and which of :data:`VECTOR_FLAGS` it has, read from
    ``cpuinfo`` (default: ``/proc/cpuinfo``); ``{}`` where that is not available (not Linux).

    Example:
        >>> cpu_features("cpu family : 25\nmodel : 1\nstepping : 1\nflags : fpu avx avx2 fma\n")
        {'family': 25, 'model': 1, 'stepping': 1, 'vector': ['avx2']}
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return {}
    fields = _cpuinfo(cpuinfo)
    out: dict[str, Any] = {}
    for key, name in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping")):
        if fields.get(key, "").isdigit():
            out[name] = int(fields[key])
    flags = set(fields.get("flags", "").split())
    if out or flags:
        out["vector"] = [f for f in VECTOR_FLAGS if f in flags]
    return out


def machine_label(machine: dict[str, Any]) -> str:
    """How figures name the CPU of a :func:`describe_machine` record: its model name, then its family and model
    numbers and its widest vector extension; the model name alone for a record from before ``cpu_features``.

    Example:
        >>> machine_label({"cpu": "AMD EPYC", "cpu_features": {"family": 25, "model": 1, "vector": ["avx2"]}})
        'AMD EPYC (family 25 model 1, avx2)'
    """
    found = machine.get("cpu_features") or {}
    parts = [f"family {found['family']} model {found['model']}"] if {"family", "model"} <= found.keys() else []
    if "vector" in found:
        parts.append(found["vector"][0] if found["vector"] else "no avx2")
    name = str(machine.get("cpu") or "?")
    return f"{name} ({', '.join(parts)})" if parts else name


def cpu_label() -> str:
    """This machine's CPU as figures name it (:func:`machine_label`)."""
    return machine_label({"cpu": cpu_model(), "cpu_features": cpu_features()})


def describe_machine() -> dict[str, Any]:
    """CPU model (and its family, model and vector extensions: :func:`cpu_features`), cores, load average now,
    platform and library versions."""
    try:
        load: Any = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on every platform
        load = None
    return {
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "load_average": load,
        "platform": platform.platform(),
        "versions": versions(),
    }
