"""The short-range Coulomb pair sum as one autograd Function.

``V_i = ½ Σ_j q_j v(r_ij)`` with ``v(r) = A erfc(r/√2σ)/r`` is the bulk of the
real-space work of Ewald, PME and P3M: through plain autograd every elementwise
step over the ``P`` pairs (clamp, divisions, ``erf``, the difference of the bare
and long-range parts, masks) is stored and replayed backward. Here the forward
computes the value and the derivative

.. math::

    v'(r) = −\\frac{1}{r}\\left(v(r) + A\\sqrt{\\tfrac{2}{π}}\\frac{e^{−r²/2σ²}}{σ}\\right)

in one pass, and the backward needs only ``v'`` and two gathers. Second
derivatives re-run the composed differentiable form inside the backward pass.
"""

import math

import torch

__all__ = ["coulomb_pair_sum"]


def _pair_values(distances, smearing: torch.Tensor, prefactor: torch.Tensor):
    """``(v, v')`` of the short-range Coulomb part at ``distances``; ``smearing``
    and ``prefactor`` are 0-dim tensors (no host read)."""
    scaled = distances * (1.0 / (math.sqrt(2.0) * smearing))
    # r is clamped as in the composed form: finite values for coincident atoms
    inverse = 1.0 / torch.clamp(distances, min=1e-15)
    values = torch.special.erfc(scaled).mul_(inverse).mul_(prefactor)
    gaussian = torch.exp(-(scaled * scaled)).mul_(
        prefactor * math.sqrt(2.0 / math.pi) / smearing
    )
    derivatives = (values + gaussian).mul_(inverse).neg_()
    return values, derivatives


def _pair_sum(charges, first, second, values, full_neighbor_list: bool):
    """``½ Σ_j q_j v_ij`` (each stored pair to both atoms for a half list)."""
    weights = values.unsqueeze(-1)
    potential = torch.zeros_like(charges).index_add_(
        0, first, charges[second] * weights
    )
    if not full_neighbor_list:
        potential.index_add_(0, second, charges[first] * weights)
    return potential * 0.5


def _composed(charges, indices, distances, smearing, prefactor, full):
    scaled = distances / (math.sqrt(2.0) * smearing)
    values = prefactor * torch.special.erfc(scaled) / torch.clamp(distances, min=1e-15)
    return _pair_sum(charges, indices[:, 0], indices[:, 1], values, full)


class _CoulombPairSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, charges, indices, distances, smearing, prefactor, full):
        first, second = indices[:, 0], indices[:, 1]
        values, derivatives = _pair_values(distances, smearing, prefactor)
        ctx.save_for_backward(charges, indices, distances)
        ctx.values = values if charges.requires_grad else None
        ctx.derivatives = derivatives if distances.requires_grad else None
        ctx.constants = (smearing, prefactor, full)
        return _pair_sum(charges, first, second, values, full)

    @staticmethod
    def backward(ctx, grad):
        charges, indices, distances = ctx.saved_tensors
        smearing, prefactor, full = ctx.constants
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # second derivatives: through the composed, differentiable form
            inputs = [
                t for t, need in zip([charges, distances], (needs[0], needs[2])) if need
            ]
            output = _composed(charges, indices, distances, smearing, prefactor, full)
            grads = list(torch.autograd.grad(output, inputs, grad, create_graph=True))
            grad_charges = grads.pop(0) if needs[0] else None
            grad_distances = grads.pop(0) if needs[2] else None
            return grad_charges, None, grad_distances, None, None, None
        first, second = indices[:, 0], indices[:, 1]
        grad_charges = grad_distances = None
        if needs[0]:
            # adjoint of the forward: the gradient goes back along each stored pair
            weights = ctx.values.unsqueeze(-1)
            grad_charges = torch.zeros_like(charges)
            grad_charges.index_add_(0, second, grad[first] * weights)
            if not full:
                grad_charges.index_add_(0, first, grad[second] * weights)
            grad_charges = grad_charges * 0.5
        if needs[2]:
            overlap = (grad[first] * charges[second]).sum(-1)
            if not full:
                overlap = overlap + (grad[second] * charges[first]).sum(-1)
            grad_distances = overlap.mul_(ctx.derivatives).mul_(0.5)
        return grad_charges, None, grad_distances, None, None, None


def coulomb_pair_sum(
    charges: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    smearing: torch.Tensor,
    prefactor: torch.Tensor,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """Per-atom short-range Coulomb potential ``½ Σ_j q_j A erfc(r_ij/√2σ)/r_ij``.

    Args:
        charges: ``(N, C)``.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``.
        neighbor_distances: ``(P,)`` distances (> 0).
        smearing, prefactor: ``σ`` and ``A``, 0-dim tensors (constants: no gradient
            flows to them; use the composed form when one is needed).
        full_neighbor_list: whether every pair appears as ``(i, j)`` and ``(j, i)``.

    Returns:
        ``(N, C)`` potential, differentiable (twice) in charges and distances.
    """
    return _CoulombPairSum.apply(
        charges,
        neighbor_indices,
        neighbor_distances.to(charges.dtype),
        smearing.detach().to(charges.dtype),
        prefactor.detach().to(charges.dtype),
        full_neighbor_list,
    )
