"""The charge sum over k-vectors as one autograd Function.

The potential is

.. math::

    φ_i = \\sum_k G_k \\left[c_{ki} C_k + s_{ki} S_k\\right], \\quad
    c_{ki} = \\cos(k·r_i),\\ s_{ki} = \\sin(k·r_i),\\
    C_k = \\sum_j c_{kj} q_j,\\ S_k = \\sum_j s_{kj} q_j.

Through plain autograd the ``(K, N)`` phases of each chunk of k-vectors are
recomputed under a checkpoint and then differentiated operation by operation
(about three forward passes). Here the forward keeps only the structure factors
``C, S`` ``(K, C)``, and the backward, chunk by chunk,
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

__all__ = ["composed_chunk", "composed_sum", "ewald_charge_sum", "phases"]


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


class _EwaldSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, charges, kvectors, kernel, chunk: int):
        # every buffer that outlives a chunk is made before the loop: small tensors
        # allocated between the chunks' large ones fragment glibc's heap, which
        # then keeps many chunks' worth of memory resident
        n_k = kvectors.shape[0]
        factors_c = charges.new_empty((n_k, charges.shape[1]))
        factors_s = charges.new_empty((n_k, charges.shape[1]))
        output = torch.zeros_like(charges)
        for start in range(0, n_k, chunk):
            stop = min(start + chunk, n_k)
            cos, sin = phases(positions, kvectors[start:stop])
            g = kernel[start:stop].unsqueeze(-1)
            part_c = torch.mm(cos, charges, out=factors_c[start:stop])
            part_s = torch.mm(sin, charges, out=factors_s[start:stop])
            output.addmm_(cos.t(), g * part_c).addmm_(sin.t(), g * part_s)
        ctx.save_for_backward(
            positions, charges, kvectors, kernel, factors_c, factors_s
        )
        ctx.chunk = chunk
        return output

    @staticmethod
    def backward(ctx, grad):
        positions, charges, kvectors, kernel, factors_c, factors_s = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = composed_sum(positions, charges, kvectors, kernel, ctx.chunk)
            inputs = [positions, charges, kvectors, kernel, None]
            return replay(output, inputs, needs, grad)
        n_k = kvectors.shape[0]
        grad_positions = torch.zeros_like(positions) if needs[0] else None
        grad_charges = torch.zeros_like(charges) if needs[1] else None
        grad_kvectors = torch.empty_like(kvectors) if needs[2] else None
        grad_kernel = torch.empty_like(kernel) if needs[3] else None
        for start in range(0, n_k, ctx.chunk):
            stop = min(start + ctx.chunk, n_k)
            k = kvectors[start:stop]
            fc, fs = factors_c[start:stop], factors_s[start:stop]
            cos, sin = phases(positions, k)
            grad_c, grad_s = cos @ grad, sin @ grad
            g = kernel[start:stop].unsqueeze(-1)
            if grad_charges is not None:
                grad_charges.addmm_(cos.t(), g * grad_c).addmm_(sin.t(), g * grad_s)
            if grad_kernel is not None:
                torch.sum(
                    grad_c * fc + grad_s * fs, dim=-1, out=grad_kernel[start:stop]
                )
            if grad_positions is None and grad_kvectors is None:
                continue
            # A_km, built in the phase buffers
            along_s = (fs @ grad.t()).addmm_(grad_s, charges.t())
            along_c = (fc @ grad.t()).addmm_(grad_c, charges.t())
            pulls = cos.mul_(along_s).sub_(sin.mul_(along_c)).mul_(g)
            if grad_positions is not None:
                grad_positions.addmm_(pulls.t(), k)
            if grad_kvectors is not None:
                torch.mm(pulls, positions, out=grad_kvectors[start:stop])
        return grad_positions, grad_charges, grad_kvectors, grad_kernel, None


def composed_sum(
    positions: torch.Tensor,
    charges: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """The sum over all k-vectors as differentiable operations, chunk by chunk."""
    output = torch.zeros_like(charges)
    for start in range(0, kvectors.shape[0], chunk):
        k, g = kvectors[start : start + chunk], kernel[start : start + chunk]
        output = output + composed_chunk(positions, charges, k, g)
    return output


def ewald_charge_sum(
    positions: torch.Tensor,
    charges: torch.Tensor,
    kvectors: torch.Tensor,
    kernel: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """``φ_i = Σ_k G_k Σ_j q_j cos(k·(r_i − r_j))``, ``(N, C)``, over all k-vectors in
    chunks of ``chunk``, with the backward described in the module docstring."""
    return _EwaldSum.apply(positions, charges, kvectors, kernel, chunk)
