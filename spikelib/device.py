"""Which device a run uses and what that device is called.

:func:`pick_device` is the one place a device name (``auto``, ``cpu``, ``cuda``, ``cuda:1``) is
turned into a ``torch.device`` — for training, the benchmarks and the book alike. Under
``torchrun`` each process passes its ``LOCAL_RANK`` and gets its own GPU.
"""
from __future__ import annotations

import platform
import resource

import torch

__all__ = ["pick_device", "peak_memory", "cpu_name", "device_name"]


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``: CUDA if available, else the CPU. ``local_rank`` (one process per GPU, set
    under torchrun): an unindexed CUDA device becomes ``cuda:<local_rank>``."""
    try:
        dev = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                           "cpu" if name == "auto" else name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: {name!r} is not a device; expected auto, cpu, cuda or "
                         f"cuda:<index>") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {name!r} is not supported; expected auto, cpu, cuda or "
                         f"cuda:<index>")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and local_rank is not None:
        if dev.index is not None and dev.index != local_rank:
            raise ValueError(f"device: {name!r} under torchrun, where process {local_rank} of "
                             f"this node uses cuda:{local_rank}; pass --device cuda or auto")
        dev = torch.device("cuda", local_rank)
    return dev


def peak_memory(device: str | torch.device) -> dict:
    """The peak memory so far: CUDA's ``max_memory_allocated`` on a GPU, else the process's
    peak resident set size (which never goes down, so it covers everything run before)."""
    device = torch.device(device)
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": torch.cuda.max_memory_allocated(device)}
    return {"kind": "process_peak_rss",
            "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str | torch.device | None = None) -> str:
    """GPU name for a CUDA device, else the CPU model."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_name()
