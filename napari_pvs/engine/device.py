"""Device choice and mixed precision, shared by training, inference and registration."""

from __future__ import annotations

import contextlib

import torch

from .errors import PVSInputError

__all__ = ["pick_device", "autocast", "amp_dtype", "is_out_of_memory", "free_cached_memory"]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises
    ------
    PVSInputError
        ``"cuda"`` asked for on a machine without CUDA, or an unknown device string.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise PVSInputError(f"unknown device {device!r}; expected auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PVSInputError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bfloat16 on CUDA GPUs that support it, else
    float16 on CUDA; None (float32, no autocast) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True):
    """``torch.autocast`` with :func:`amp_dtype` on CUDA; a no-op context on the CPU or when
    ``enabled`` is False (CPU work stays float32)."""
    dtype = amp_dtype(device)
    if not enabled or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator's out-of-memory error (``torch.OutOfMemoryError``, or a
    RuntimeError saying "out of memory" from older torch or other backends)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cached_memory(device: torch.device) -> None:
    """Give the CUDA caching allocator's free blocks back (after an out-of-memory error)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
