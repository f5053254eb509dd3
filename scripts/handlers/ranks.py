"""Which process of a distributed run writes files: rank 0 only, the others compute and synchronise."""

from __future__ import annotations

import ignite.distributed as idist

__all__ = ["is_main_process"]


def is_main_process() -> bool:
    """True outside a distributed run and on rank 0 of one (the configs disable writing handlers elsewhere)."""
    return idist.get_rank() == 0
