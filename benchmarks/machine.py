"""The machine description every benchmark result records: the library's, plus torch's threads and GPU."""

from __future__ import annotations

from typing import Any

from defectlens.core.machine import describe_machine


def describe() -> dict[str, Any]:
    """CPU model, cores, load average at start, platform, library versions, torch threads and CUDA device."""
    import torch

    out = describe_machine()
    out["load_average_at_start"] = out.pop("load_average")
    out["torch_threads"] = torch.get_num_threads()
    out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return out
