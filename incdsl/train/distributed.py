"""Processes and devices: one process, or one per device under `torchrun`.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; with more than one process we join the
process group (NCCL on CUDA, Gloo on CPU), each process drives device LOCAL_RANK, and rank 0
alone prints and writes files. The helpers here are no-ops for a single process, so the
training loop reads the same either way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..diagnostics import error


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among `world` processes and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """True on the process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """`cuda`, `cpu` or None (CUDA when there is one). Raises IncdslError if CUDA is asked for
    but absent."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise error("--device cuda was asked for, but PyTorch finds no CUDA device",
                        notes=[f"torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}"],
                        hint="check `nvidia-smi` and the CUDA build of torch, or pass --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise error(f"process {local_rank} has no GPU: only {torch.cuda.device_count()} CUDA device(s)",
                        hint="start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise error(f"unknown device `{name}`", hint="use --device cuda or --device cpu")


def _env_int(name: str, default: int) -> int:
    """A whole number >= 0 from the environment torchrun sets (an IncdslError otherwise)."""
    text = os.environ.get(name, str(default)).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise error(f"the environment variable {name}={text!r} is not a process count or index",
                    hint="start several processes with torchrun, which sets it; unset it otherwise")
    return int(text)


def setup(device: str | None) -> Context:
    """Join torchrun's process group if there is one; pick this process's device."""
    world, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or rank >= world:
        raise error(f"WORLD_SIZE={world} and RANK={rank} name no process of a group",
                    hint="start several processes with torchrun, which sets them; unset them otherwise")
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world, local_rank, dev)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(ctx: Context, values: list) -> list:
    """Sum a list of numbers (floats) over all processes; returns plain floats."""
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(t)
    return t.tolist()


def all_gather(ctx: Context, obj) -> list:
    """Every process's `obj` (picklable), in rank order."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def average_buffers(ctx: Context, module: torch.nn.Module) -> None:
    """Average the floating-point buffers (batch-norm statistics) over all processes.

    DDP keeps parameters equal, but each process updates its running statistics from its
    own last batch; averaging them makes every process evaluate and save the same model.
    """
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(ctx.world)


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
