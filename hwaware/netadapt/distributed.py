"""torch.distributed plumbing for NetAdapt: proposals of an iteration run in parallel on ranks.

Launch with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``)::

    torchrun --nproc_per_node 4 -m hwaware netadapt models/small_cnn.py ... --workdir runs/na

Backend: ``gloo`` when the job runs on CPU, ``nccl`` on GPUs (rank ``r`` uses ``cuda:LOCAL_RANK``).
Proposal ``k`` of an iteration is computed by rank ``k % world``; every proposal starts from the
same network and is seeded from (seed, iteration, k), so the split across ranks cannot change a
result. Rank 0 picks the proposal and broadcasts the pick; the rank that computed it broadcasts
the network. Only rank 0 writes to the workdir (on several nodes it need not be shared).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import HwawareError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world``, and the device it computes on."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    owns_group: bool = False  # this context created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, k: int) -> bool:
        """Whether proposal ``k`` is computed by this rank."""
        return k % self.world == self.rank

    def owner(self, k: int) -> int:
        return k % self.world

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (a one-element list when not distributed)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank (pickled; keep tensors on the CPU)."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, error: str | None) -> None:
        """Raise the same HwawareError on every rank if any rank hit one (no rank left waiting)."""
        errors = [e for e in self.gather(error) if e]
        if errors:
            raise HwawareError(errors[0])


def setup(device: str | None = None) -> DistContext:
    """The context for this process: joins the torchrun process group when ``WORLD_SIZE > 1``.

    ``device``: ``"cpu"``, ``"cuda"`` (each rank takes ``cuda:LOCAL_RANK``) or None (cuda when
    available under a multi-process launch with GPUs, else cpu). An already initialized default
    process group (a user script) is used as it is.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if device not in (None, "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise HwawareError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device is None:
        device = "cuda" if (world > 1 and torch.cuda.is_available()) else "cpu"
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        return DistContext(rank, world, _rank_device(device, rank), owns_group=False)
    if world <= 1:
        return DistContext(0, 1, _rank_device(device, 0))
    if not dist.is_available():
        raise HwawareError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise HwawareError(f"WORLD_SIZE={world} but {key} is not set; launch with torchrun")
    rank = int(os.environ["RANK"])
    dev = _rank_device(device, int(os.environ.get("LOCAL_RANK", rank)))
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(dev))
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, dev, owns_group=True)


def teardown(ctx: DistContext, *, clean: bool = True) -> None:
    """Leave the process group. After a clean finish all ranks meet at a barrier first, so no rank
    destroys its gloo context (and exits) while a peer is still communicating -- that aborts the
    peer at exit. After an error there is no barrier: the peers may be blocked in a collective, and
    leaving at once lets torchrun stop the job instead of hanging until the gloo timeout."""
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                if clean:
                    dist.barrier()
            finally:
                dist.destroy_process_group()


def _rank_device(device: str, local_rank: int) -> str:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise HwawareError("device 'cuda' requested but CUDA is not available")
        return f"cuda:{local_rank % max(1, torch.cuda.device_count())}"
    return device
