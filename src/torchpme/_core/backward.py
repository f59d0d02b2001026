"""A helper shared by the hand-written backward passes of ``_core``.

:func:`replay` gives second derivatives: a Function whose backward is written by
hand re-runs its forward as differentiable operations and lets autograd
differentiate that (as activation checkpointing does).
"""

from typing import Optional, Sequence, Tuple

import torch

__all__ = ["replay"]


def replay(
    output: torch.Tensor,
    inputs: Sequence[Optional[torch.Tensor]],
    needs: Sequence[bool],
    grad: torch.Tensor,
) -> Tuple[Optional[torch.Tensor], ...]:
    """Differentiable gradients of ``output`` (recomputed from ``inputs``) for a
    Function's backward: one entry per forward argument, ``None`` where
    ``needs`` (``ctx.needs_input_grad``) is false."""
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    grads = iter(torch.autograd.grad(output, wanted, grad, create_graph=True))
    return tuple(
        next(grads) if need and t is not None else None
        for t, need in zip(inputs, needs)
    )
