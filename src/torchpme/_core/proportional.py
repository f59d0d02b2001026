"""Whether an upstream gradient is proportional to the values, channel by channel.

Backward passes of linear maps ``φ = A q`` with ``A`` symmetric (the mesh
convolution, the pair sums) take a shortcut when the gradient reaching them is
``c · q``: that is the case for an energy ``E = Σ_i q_i φ_i``, whose gradient with
respect to ``φ`` is the charges, and then ``A g = c · A q`` is already known from
the forward pass.
"""

from typing import List, Optional

import torch

__all__ = ["channel_factors"]


def channel_factors(grad: torch.Tensor, values: torch.Tensor) -> Optional[List[float]]:
    """``c`` with ``grad[:, k] = c[k] · values[:, k]`` to rounding, or ``None``.

    Reading the values is a host synchronisation: CPU and eager mode only.
    """
    if grad.device.type != "cpu" or grad.shape != values.shape:
        return None
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return None
    norms = (values * values).sum(0)
    overlaps = (grad * values).sum(0)
    grad_norms = (grad * grad).sum(0)
    factors = torch.where(norms > 0, overlaps / norms, torch.zeros_like(norms))
    residual = grad - factors * values
    # the upstream gradient is c·q computed in a few roundings per value; replacing
    # it by c·q changes the gradient by as little
    tolerance = max(1e-12, 64.0 * torch.finfo(grad.dtype).eps)
    excess = (residual * residual).sum(0) - tolerance**2 * grad_norms
    if bool((excess > 0).any()):
        return None
    return factors.tolist()
