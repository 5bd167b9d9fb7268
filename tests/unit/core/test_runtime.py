"""The CPU allocator settings: in effect on Linux/glibc, idempotent, harmless elsewhere."""

from __future__ import annotations

import platform
import sys

import torch

from defectlens.core.runtime import tune_cpu_allocator


def test_allocator_tuning_takes_effect_on_glibc_and_is_idempotent():
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() is first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first is True
    # tensors still allocate, free and compute correctly afterwards
    x = torch.ones(2048, 2048)
    assert float((x @ x)[0, 0]) == 2048.0
