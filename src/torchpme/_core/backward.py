"""Helpers shared by the hand-written backward passes of ``_core``.

:func:`channel_factors` tells whether an upstream gradient is proportional to the
values, channel by channel. Backward passes of linear maps ``φ = A q`` with ``A``
symmetric (the mesh convolution, the pair sums) take a shortcut when the gradient
reaching them is ``c · q``: that is the case for an energy ``E = Σ_i q_i φ_i``,
whose gradient with respect to ``φ`` is the charges, and then ``A g = c · A q`` is
already known from the forward pass.

:func:`replay` gives second derivatives: a Function whose backward is written by
hand re-runs its forward as differentiable operations and lets autograd
differentiate that (as activation checkpointing does).
"""

from typing import List, Optional, Sequence, Tuple

import torch

from .validation import compiling

__all__ = ["channel_factors", "factors_possible", "replay"]


def factors_possible(tensor: torch.Tensor) -> bool:
    """Whether :func:`channel_factors` may find factors for gradients of values
    living where ``tensor`` lives: on the CPU in eager mode only (elsewhere what a
    forward keeps for that shortcut would go unused)."""
    return tensor.device.type == "cpu" and not compiling()


def channel_factors(
    grad: torch.Tensor, values: torch.Tensor, rounding: float = 64.0
) -> Optional[List[float]]:
    """``c`` with ``grad[:, k] = c[k] · values[:, k]`` to rounding, or ``None``.

    Reading the values is a host synchronisation: CPU and eager mode only. A few
    operators in all (five small matrix products and one residual), since small
    systems call this twice per step.
    """
    if not factors_possible(grad) or grad.shape != values.shape:
        return None
    channels = grad.shape[1]
    # in float64 whatever the values' dtype: a matrix product sums its N terms in
    # sequence, with a relative error up to ~N·eps (float32: 2e-5 for N = 2^20);
    # products of the columns as they are (no concatenated copy: on mesh-sized
    # values, in the filter's backward, copies cost more than the products)
    grad64, values64 = grad.to(torch.float64), values.to(torch.float64)
    gg, gv, vv = torch.stack(
        [_dots(grad64, grad64), _dots(grad64, values64), _dots(values64, values64)]
    ).tolist()
    factors = [gv[k] / vv[k] if vv[k] > 0 else 0.0 for k in range(channels)]
    residual = _minus_scaled(grad64, values64, factors)
    # even in float64 the first factor is ~N·eps off (2.5e-12 for charges ±1 at
    # N = 262144, beyond the tolerance below, which large systems would then miss):
    # it is refined once from the residual r, whose own products are small, and
    # the test is ‖r − δ v‖² = r·r − (r·v)²/(v·v) with δ = (r·v)/(v·v)
    rr, rv = torch.stack(
        [_dots(residual, residual), _dots(residual, values64)]
    ).tolist()
    # the upstream gradient is c·q computed in a few roundings per value (``rounding``
    # machine epsilons, relative); replacing it by c·q changes the gradient by as
    # little
    tolerance = max(1e-12, rounding * torch.finfo(grad.dtype).eps)
    for k in range(channels):
        delta = rv[k] / vv[k] if vv[k] > 0 else 0.0
        excess = rr[k] - rv[k] * delta
        if excess > tolerance**2 * max(gg[k], 0.0):
            return None
        factors[k] += delta
    return factors


def _dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_i a_ik b_ik`` per column ``k``: ``(C,)``."""
    return torch.diagonal(a.t() @ b)


def _minus_scaled(
    grad: torch.Tensor, values: torch.Tensor, factors: List[float]
) -> torch.Tensor:
    """``grad − values · factors`` (one factor per channel)."""
    if len(factors) == 1:
        return torch.add(grad, values, alpha=-factors[0])
    scale = torch.tensor(factors, dtype=grad.dtype, device=grad.device)
    return grad - values * scale


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
