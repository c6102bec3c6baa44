"""Multi-GPU layout and the optimizer: FSDP full shard (or DDP), AdamW in 32 or 8 bits.

Imports torch inside functions, like every recipe module: the script's top imports only the standard library.
"""

from __future__ import annotations

import os
from typing import Any

from tools.recipe.exits import EXIT_MISSING_DEPENDENCY, RecipeFailure


def shard_model(model: Any, device: Any) -> Any:
    """Shard the model with FSDP2 (``fully_shard``), one unit per decoder layer, then the root, in place.

    The decoder layer classes are the ones transformers names in ``_no_split_modules`` (what accelerate's device
    maps keep whole). Called before the optimizer, which must see the sharded parameters. FSDP2 runs on CUDA
    (NCCL) and on CPU (gloo), so the tests exercise this path on a CPU machine.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (int(os.environ["WORLD_SIZE"]),))
    names = set(getattr(model, "_no_split_modules", None) or [])
    for module in list(model.modules()):
        if type(module).__name__ in names:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full_state_dict(model: Any) -> dict[str, Any] | None:
    """The whole model's weights gathered from every rank to rank 0, on the host; None on the other ranks.

    Every rank must call it (it is a collective); only rank 0 writes what it returns.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    return state if dist.get_rank() == 0 else None


def make_optimizer(name: str, params: list, *, lr: float, weight_decay: float) -> Any:
    """AdamW: torch's (fp32 moments), or bitsandbytes' 8-bit moments (plain or paged) on a CUDA GPU."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    try:
        import bitsandbytes.optim as bnb_optim
    except ImportError:
        why = f"optimizer {name} needs bitsandbytes: pip install bitsandbytes"
        raise RecipeFailure(EXIT_MISSING_DEPENDENCY, "missing_dependency", why) from None
    cls = bnb_optim.PagedAdamW8bit if name == "paged_adamw_8bit" else bnb_optim.AdamW8bit
    return cls(params, lr=lr, weight_decay=weight_decay)
