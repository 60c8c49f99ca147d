"""Mixed precision choice: bf16 autocast on GPU by default, full precision on CPU."""
from __future__ import annotations

import contextlib

import torch


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """``auto`` -> bf16 on CUDA, None (off) on CPU; ``none`` / ``bf16`` / ``fp16`` as named."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setting]


def amp_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
