"""The charge sum over a chunk of k-vectors as one autograd Function.

For a chunk of k-vectors the potential is

.. math::

    φ_i = \\sum_k G_k \\left[c_{ki} C_k + s_{ki} S_k\\right], \\quad
    c_{ki} = \\cos(k·r_i),\\ s_{ki} = \\sin(k·r_i),\\
    C_k = \\sum_j c_{kj} q_j,\\ S_k = \\sum_j s_{kj} q_j.

Through plain autograd the ``(K, N)`` phases are recomputed under a checkpoint and
then differentiated operation by operation (about three forward passes). Here the
forward keeps only the structure factors ``C, S`` ``(K, C)``, and the backward,
for an upstream gradient ``g`` with ``C^g_k = Σ_i c_ki g_i`` and ``S^g_k = Σ_i s_ki
g_i``, uses

.. math::

    \\frac{∂L}{∂(k·r_m)} = G_k\\left[c_{km}(g_m·S_k + q_m·S^g_k)
        − s_{km}(g_m·C_k + q_m·C^g_k)\\right] = A_{km},

so ``∂L/∂r_m = Σ_k A_km k``, ``∂L/∂k = Σ_m A_km r_m``, ``∂L/∂q = Σ_k G_k (c_k C^g_k
+ s_k S^g_k)`` and ``∂L/∂G_k = C^g_k·C_k + S^g_k·S_k``: one recomputation of the
phases. Second derivatives replay the composed operations.
"""

from typing import Tuple

import torch

from .backward import replay

__all__ = ["ewald_chunk", "phases"]


def phases(
    positions: torch.Tensor, kvectors: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``cos(k·r)`` and ``sin(k·r)``, ``(K, N)`` each."""
    phase = kvectors @ positions.t()
    return torch.cos(phase), torch.sin(phase)


def composed_chunk(
    positions: torch.Tensor,
    charges: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
) -> torch.Tensor:
    """The chunk's potential ``(N, C)`` as differentiable operations."""
    cos, sin = phases(positions, kvectors)
    g = kernel.unsqueeze(-1)
    return cos.t() @ (g * (cos @ charges)) + sin.t() @ (g * (sin @ charges))


class _EwaldChunk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, charges, kvectors, kernel):
        cos, sin = phases(positions, kvectors)
        factors_c, factors_s = cos @ charges, sin @ charges
        g = kernel.unsqueeze(-1)
        output = cos.t() @ (g * factors_c) + sin.t() @ (g * factors_s)
        ctx.save_for_backward(
            positions, charges, kvectors, kernel, factors_c, factors_s
        )
        return output

    @staticmethod
    def backward(ctx, grad):
        positions, charges, kvectors, kernel, factors_c, factors_s = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = composed_chunk(positions, charges, kvectors, kernel)
            return replay(output, [positions, charges, kvectors, kernel], needs, grad)
        cos, sin = phases(positions, kvectors)
        grad_c, grad_s = cos @ grad, sin @ grad
        g = kernel.unsqueeze(-1)
        grad_positions = grad_charges = grad_kvectors = grad_kernel = None
        if needs[1]:
            grad_charges = cos.t() @ (g * grad_c) + sin.t() @ (g * grad_s)
        if needs[0] or needs[2]:
            # A_km, built in the phase buffers
            along_s = (factors_s @ grad.t()).addmm_(grad_s, charges.t())
            along_c = (factors_c @ grad.t()).addmm_(grad_c, charges.t())
            pulls = cos.mul_(along_s).sub_(sin.mul_(along_c)).mul_(g)
            if needs[0]:
                grad_positions = pulls.t() @ kvectors
            if needs[2]:
                grad_kvectors = pulls @ positions
        if needs[3]:
            grad_kernel = (grad_c * factors_c).sum(-1) + (grad_s * factors_s).sum(-1)
        return grad_positions, grad_charges, grad_kvectors, grad_kernel


def ewald_chunk(
    positions: torch.Tensor,
    charges: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
) -> torch.Tensor:
    """``φ_i = Σ_k G_k Σ_j q_j cos(k·(r_i − r_j))`` over one chunk of k-vectors,
    ``(N, C)``, with the backward described in the module docstring."""
    return _EwaldChunk.apply(positions, charges, kvectors, kernel)
