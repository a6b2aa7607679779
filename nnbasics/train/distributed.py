"""Training on several processes with torch.distributed: ``torchrun --nproc-per-node N -m nnbasics.train``.

torchrun starts N copies of the script and tells each its place in the environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Each process then:

- joins the process group (gloo on the CPU, NCCL on CUDA, one GPU per process: cuda:LOCAL_RANK);
- wraps the model in ``DistributedDataParallel``, which averages the gradients over the
  processes during ``backward``, so every process takes the same optimiser step;
- draws the same global batch as a single process would (same generator, same seed, same
  random shifts) and keeps its own ``1/N`` of its rows (``shard``): every process sees a
  different part of every epoch, and the global batch is ``--batch-size`` whatever N.
  With dropout off, the weights equal those of one process with the same global batch,
  up to the order in which the gradients are summed.

Metrics are summed over the processes once per epoch; only rank 0 writes files and prints.
Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..cli import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes the run folder."""
        return self.rank == 0


def from_environment() -> World:
    """The World torchrun describes in the environment; World() for a plain ``python -m``."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    try:
        return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"torch.distributed environment: RANK and WORLD_SIZE must be integers ({e}); "
                          f"start with torchrun --nproc-per-node N -m nnbasics.train") from None


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per process on CUDA (cuda:LOCAL_RANK); the CPU is shared."""
    if world.size > 1 and device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started more processes per node than the {torch.cuda.device_count()} "
                              f"GPU(s) here; use --nproc-per-node {torch.cuda.device_count()} or fewer")
        return torch.device("cuda", world.local_rank)
    return device


def start(world: World, device: torch.device) -> None:
    """Join the process group (gloo on the CPU, NCCL on CUDA); nothing for one process."""
    if world.size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


@contextlib.contextmanager
def process_group(world: World, device: torch.device):
    """The block in the process group (``start``, then ``stop`` however the block ends)."""
    start(world, device)
    try:
        yield
    finally:
        stop(world)


def stop(world: World) -> None:
    """Leave the process group. On gloo every process first waits for the others (at most 30 s):
    rank 0 hosts the group's store, and a process whose store went away while it was still
    leaving died with SIGABRT after a Ctrl-C in the tests."""
    if world.size > 1 and dist.is_initialized():
        if dist.get_backend() == "gloo":
            with contextlib.suppress(RuntimeError):  # a process that is gone: leave anyway
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=30))
        dist.destroy_process_group()


def check_batch_size(world: World, batch_size: int) -> None:
    if batch_size % world.size:
        raise ConfigError(f"--batch-size {batch_size}: the global batch is split evenly over the {world.size} "
                          f"processes; give a multiple of {world.size}")


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel(model) on several processes (it also broadcasts rank 0's weights)."""
    if world.size == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shard(world: World, *tensors):
    """This process's rows of a global batch: rank r of N keeps rows [r·B/N, (r+1)·B/N)."""
    if world.size == 1:
        return tensors
    n = len(tensors[0]) // world.size
    return tuple(t[world.rank * n:(world.rank + 1) * n] for t in tensors)


def all_sum(world: World, *tensors):
    """The tensors summed over every process (in place); unchanged for one process."""
    if world.size > 1:
        for t in tensors:
            dist.all_reduce(t)
    return tensors


def gather(world: World, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process; [obj] for one process."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def from_main(world: World, obj):
    """Rank 0's ``obj``, on every process (e.g. the run folder, whose name has the time in it)."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World):
    """Run the block on rank 0 first, then on the others (e.g. filling a cache they then read)."""
    if not world.main:
        barrier(world)
    yield
    if world.main:
        barrier(world)
