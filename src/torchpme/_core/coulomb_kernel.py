"""The Gaussian-smeared Coulomb kernel in reciprocal space, with its own backward.

``G(k²) = A 4π e^{−σ² k²/2} / k²`` (0 at ``k = 0``, removed by neutrality) on grids
of mesh size: 8.5 M values for a 256³ mesh. Through plain autograd its five
operations keep their results and their backward takes about fifteen passes over
the grid, which made the filter the largest part of a PME step with stress. With
``K = e^{−σ²k²/2}/k²`` and ``w = ∂L/∂G · K``:

.. math::

    \\frac{∂L}{∂k^2} = −4πA\\, w \\left(\\frac{σ^2}{2} + \\frac{1}{k^2}\\right),
    \\qquad \\frac{∂L}{∂σ} = −4πA σ \\sum w k^2, \\qquad
    \\frac{∂L}{∂A} = 4π \\sum w,

a handful of passes. Second derivatives re-run the composed operations.
"""

import math

import torch

from .backward import replay
from .execution import traced

__all__ = ["coulomb_kernel"]


def coulomb_kernel(
    k_sq: torch.Tensor, smearing: torch.Tensor, prefactor: torch.Tensor
) -> torch.Tensor:
    """``A 4π e^{−σ² k²/2} / k²``, set to 0 at ``k = 0``.

    Args:
        k_sq: squared wave-vector norms, any shape.
        smearing: ``σ``, 0-dim.
        prefactor: ``A``, 0-dim.

    Returns:
        the kernel, shape of ``k_sq``.
    """
    if not (k_sq.requires_grad or smearing.requires_grad or prefactor.requires_grad):
        # nothing to differentiate: one buffer, updated in place
        return _unscaled(k_sq, smearing).mul_(4.0 * math.pi * prefactor)
    if torch.jit.is_scripting():
        return _coulomb_from_ops(k_sq, smearing, prefactor)
    if traced(k_sq):
        return _coulomb_from_ops(k_sq, smearing, prefactor)
    return _coulomb_by_function(k_sq, smearing, prefactor)


def _unscaled(k_sq: torch.Tensor, smearing: torch.Tensor) -> torch.Tensor:
    """``e^{−σ²k²/2}/k²`` (0 at ``k = 0``) in one fresh buffer: the ``1/0`` at
    ``k = 0`` is overwritten by the mask."""
    kernel = (k_sq * (-0.5 * smearing**2)).exp_().div_(k_sq)
    return kernel.masked_fill_(k_sq == 0.0, 0.0)


def _coulomb_from_ops(
    k_sq: torch.Tensor, smearing: torch.Tensor, prefactor: torch.Tensor
) -> torch.Tensor:
    """The kernel in differentiable operations (no division by zero anywhere)."""
    zero = k_sq == 0.0
    safe = k_sq.masked_fill(zero, 1.0)
    kernel = torch.exp(safe * (-0.5 * smearing**2)) / safe
    return (kernel * (4.0 * math.pi * prefactor)).masked_fill(zero, 0.0)


class _CoulombKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k_sq, smearing, prefactor):
        unscaled = _unscaled(k_sq, smearing)
        ctx.save_for_backward(k_sq, smearing, prefactor, unscaled)
        return unscaled * (4.0 * math.pi * prefactor)

    @staticmethod
    def backward(ctx, grad):
        k_sq, smearing, prefactor, unscaled = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = _coulomb_from_ops(k_sq, smearing, prefactor)
            return replay(output, [k_sq, smearing, prefactor], needs, grad)
        weighted = grad * unscaled
        scale = 4.0 * math.pi * prefactor
        grad_k_sq = grad_smearing = grad_prefactor = None
        if needs[0]:
            # w/k² + w σ²/2, then −4πA; w = 0 at k = 0, where the 0/0 is masked
            grad_k_sq = weighted.div(k_sq).addcmul_(weighted, 0.5 * smearing**2)
            grad_k_sq.mul_(-scale).masked_fill_(k_sq == 0.0, 0.0)
        if needs[1]:
            overlap = torch.dot(weighted.reshape(-1), k_sq.reshape(-1))
            grad_smearing = -scale * smearing * overlap
        if needs[2]:
            grad_prefactor = 4.0 * math.pi * weighted.sum()
        return grad_k_sq, grad_smearing, grad_prefactor


@torch.jit.unused
def _coulomb_by_function(
    k_sq: torch.Tensor, smearing: torch.Tensor, prefactor: torch.Tensor
) -> torch.Tensor:
    return _CoulombKernel.apply(k_sq, smearing, prefactor)
