"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts one process per device,
this module joins them (:func:`setup`) and says which examples each one trains (:func:`shard`).

Every process draws the same seeded epoch order and global batches of ``batch_size``; process
``r`` of ``W`` trains the ``r``-th consecutive slice of each, so an epoch and every optimiser step
see the examples of a single process (the parameters agree up to the order of float sums).
Evaluation, checkpoints and results are rank 0's alone. A collective that waits longer than the
``timeout`` raises instead of hanging. Without torchrun the run is one process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from spikelib.device import pick_device

__all__ = ["Context", "SINGLE", "PeerError", "setup", "teardown", "check_batches", "shard",
           "wrap", "all_sum", "gather", "from_peer"]


class PeerError(RuntimeError):
    """A collective failed or timed out: another process of the run failed or hangs."""


_PEER_SIGNS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
               "nccl", "gloo")


def from_peer(err: BaseException, ctx: Context) -> bool:
    """Whether ``err``, raised in a process group, comes from a collective (torch reports a
    gloo timeout inside ``backward`` as a plain RuntimeError naming gloo)."""
    return ctx.active and (isinstance(err, dist.DistError)
                           or any(s in str(err).lower() for s in _PEER_SIGNS))


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world``; ``active`` when a process group is
    joined (under torchrun, even with one process)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the process that evaluates and writes checkpoints, logs and results."""
        return self.rank == 0


SINGLE = Context()


def setup(device: str, timeout_s: float) -> tuple[Context, torch.device]:
    """Join torchrun's process group (if launched by torchrun and not joined yet); returns
    (context, device). The group stays joined until :func:`teardown`."""
    if not dist.is_torchelastic_launched():
        return SINGLE, pick_device(device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    dev = pick_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=dev if dev.type == "cuda" else None)
    return Context(rank, world, local, True), dev


def teardown() -> None:
    """Leave the process group (at the end of the process: torch cannot join the same
    torchrun group twice)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batches(n: int, batch_size: int, ctx: Context) -> None:
    """ValueError unless every global batch of an epoch splits into ``ctx.world`` non-empty
    equal shards (the last, shorter batch into non-empty ones)."""
    if batch_size % ctx.world:
        raise ValueError(f"batch_size: the global batch {batch_size} does not divide by the "
                         f"{ctx.world} processes; choose a multiple of {ctx.world}")
    if 0 < n % batch_size < ctx.world:
        raise ValueError(f"batch_size: the last batch of an epoch holds {n % batch_size} of "
                         f"{n} training sequences, fewer than the {ctx.world} processes; "
                         f"change --batch-size or --limit-train")


def shard(batch: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This process's consecutive slice of a global batch of indices (sizes differ by at most
    one, only in a shorter last batch)."""
    return batch if ctx.world == 1 else torch.tensor_split(batch, ctx.world)[ctx.rank]


def wrap(model: torch.nn.Module, device: torch.device, ctx: Context) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` in a process group, else ``model`` itself."""
    if not ctx.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum ``t`` over the processes (in place; a no-op for one process)."""
    if ctx.active:
        dist.all_reduce(t)
    return t


def gather(obj, ctx: Context) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (picklable objects)."""
    if not ctx.active:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out
