"""The few collective operations training needs, all no-ops in a single process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def start(device: torch.device) -> tuple[int, int]:
    """(rank, world): joins the process group torchrun describes (NCCL on GPUs, gloo on CPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks."""
    if not active():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(dist.get_world_size())


def maximum(value: float, device: torch.device) -> float:
    """The largest of every rank's ``value`` (so ranks report the same wall time)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
