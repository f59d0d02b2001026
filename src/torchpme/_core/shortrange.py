"""The short-range Coulomb pair sum as one autograd Function.

``V_i = ½ Σ_j q_j v(r_ij)`` with ``v(r) = A erfc(r/√2σ)/r`` is the bulk of the
real-space work of Ewald, PME and P3M: through plain autograd every elementwise
step over the ``P`` pairs (clamp, divisions, ``erf``, the difference of the bare
and long-range parts, masks) is stored and replayed backward. Here the forward
computes the value and the derivative

.. math::

    v'(r) = −\\frac{1}{r}\\left(v(r) + A\\sqrt{\\tfrac{2}{π}}\\frac{e^{−r²/2σ²}}{σ}\\right)

in one pass. For an energy (upstream gradient proportional to the charges) the
gradient of each distance is ``c q_i q_j v'(r_ij)``: the forward keeps these
products, one per pair and channel, and the backward is a single multiplication
per pair; any other upstream gradient recomputes ``v'`` from the distances. Second
derivatives (forces in a loss) are built in the backward pass from two small
Functions, ``v`` whose derivative is ``v'`` and ``v'`` whose derivative is

.. math::

    v''(r) = \\frac{G(r)}{σ^2} − \\frac{2 v'(r)}{r}, \\qquad
    G(r) = A\\sqrt{\\tfrac{2}{π}}\\frac{e^{−r²/2σ²}}{σ},

instead of replaying the composed ``erfc`` expression through autograd.
"""

import math
from typing import Callable, List, Optional, Tuple

import torch

from . import defaults, fused
from .backward import channel_factors, factors_possible
from .chunks import chunk_length
from .pairlist import columns_for

__all__ = ["coulomb_pair_sum"]


def _pair_values(distances, smearing: torch.Tensor, prefactor: torch.Tensor):
    """``v`` of the short-range Coulomb part at ``distances``; ``smearing`` and
    ``prefactor`` are 0-dim tensors (no host read)."""
    # r is clamped as in the composed form: finite values for coincident atoms
    scaled = distances * (1.0 / (math.sqrt(2.0) * smearing))
    inverse = torch.clamp(distances, min=1e-15).reciprocal_()
    return torch.special.erfc(scaled).mul_(inverse).mul_(prefactor), scaled, inverse


def _pair_derivatives(values, scaled, inverse, smearing, prefactor) -> torch.Tensor:
    """``v'`` from ``v`` and the scaled and inverse distances (built in place in
    ``scaled``)."""
    gaussian = scaled.square_().neg_().exp_()
    gaussian.mul_(prefactor * math.sqrt(2.0 / math.pi) / smearing).add_(values)
    return gaussian.mul_(inverse).neg_()


def _derivatives(distances, smearing, prefactor) -> torch.Tensor:
    return _pair_derivatives(
        *_pair_values(distances, smearing, prefactor), smearing, prefactor
    )


# values(start, stop) -> (v, w): the pair values of a chunk and the weights of
# the charge products kept for the backward (None if none are kept)
Values = Callable[[int, int], Tuple[torch.Tensor, Optional[torch.Tensor]]]


def _pair_sum(charges, first, second, values: Values, full: bool, products=None):
    """``½ Σ_j q_j v_ij`` per channel (each stored pair to both atoms for a half
    list); ``values(start, stop)`` gives the pair values ``v`` of a chunk and
    weights ``w``. Writes ``q_i q_j w`` into ``products`` ``(C, P)`` if given.

    Chunks of pairs, one channel at a time with 1-D gathers and accumulations:
    several times faster on CPU than the same operations on ``(P, C)`` rows.
    """
    q = [charges[:, channel].contiguous() for channel in range(charges.shape[1])]
    columns = [torch.zeros_like(q_channel) for q_channel in q]
    step = chunk_length(defaults.PAIRS, first.shape[0], first.device)
    for start in range(0, first.shape[0], step):
        stop = min(start + step, first.shape[0])
        v, w = values(start, stop)
        i, j = first[start:stop], second[start:stop]
        for channel, q_channel in enumerate(q):
            q_j = q_channel.index_select(0, j)
            q_i = None
            if not full or products is not None:
                q_i = q_channel.index_select(0, i)
            if products is not None and q_i is not None:
                torch.mul(q_i, q_j, out=products[channel, start:stop]).mul_(w)
            # the gathered charges become the contributions in place
            columns[channel].index_add_(0, i, q_j.mul_(v))
            if q_i is not None and not full:
                columns[channel].index_add_(0, j, q_i.mul_(v))
    # out of place: under torch.compile the output of an in-place operation
    # returned by an autograd Function's forward routes its gradient to the wrong
    # slot (pytorch/pytorch#180642, PyTorch 2.11); test_deployment checks that no
    # Function returns one
    return torch.mul(_stack(columns, 1), 0.5)


def _slices(values: torch.Tensor) -> Values:
    return lambda start, stop: (values[start:stop], None)


def _stack(tensors: List[torch.Tensor], dim: int) -> torch.Tensor:
    # a single channel needs no copy
    return tensors[0].unsqueeze(dim) if len(tensors) == 1 else torch.stack(tensors, dim)


def _pair_overlap(grad, charges, first, second, full: bool) -> torch.Tensor:
    """``Σ_c g_ic q_jc (+ g_jc q_ic for a half list)`` per pair, ``(P,)``."""
    overlap = torch.zeros(first.shape[0], dtype=grad.dtype, device=grad.device)
    for channel in range(grad.shape[1]):
        g, q = grad[:, channel].contiguous(), charges[:, channel].contiguous()
        overlap += g.index_select(0, first) * q.index_select(0, second)
        if not full:
            overlap += g.index_select(0, second) * q.index_select(0, first)
    return overlap


def _curvatures(distances, smearing, prefactor) -> torch.Tensor:
    """``v''(r) = G/σ² − 2 v'/r`` with ``G = A √(2/π) e^{−r²/2σ²} / σ``, in
    differentiable operations (third derivatives differentiate it; ``v'`` through
    :class:`_PairSlopes`, whose derivative is this again)."""
    scaled = distances / (math.sqrt(2.0) * smearing)
    inverse = 1.0 / torch.clamp(distances, min=1e-15)
    gaussian = prefactor * math.sqrt(2.0 / math.pi) / smearing * torch.exp(-(scaled**2))
    slopes = _PairSlopes.apply(distances, smearing, prefactor)
    return gaussian / smearing**2 - 2.0 * slopes * inverse


class _PairSlopes(torch.autograd.Function):
    """``v'(r)`` per pair, whose derivative is ``v''(r)``."""

    @staticmethod
    def forward(ctx, distances, smearing, prefactor):
        ctx.save_for_backward(distances, smearing, prefactor)
        return _derivatives(distances, smearing, prefactor)

    @staticmethod
    def backward(ctx, grad):
        distances, smearing, prefactor = ctx.saved_tensors
        return grad * _curvatures(distances, smearing, prefactor), None, None


class _PairValues(torch.autograd.Function):
    """``v(r)`` per pair, whose derivative is :class:`_PairSlopes`: the second
    derivatives of the pair sum without replaying its composed form."""

    @staticmethod
    def forward(ctx, distances, smearing, prefactor):
        ctx.save_for_backward(distances, smearing, prefactor)
        return _pair_values(distances, smearing, prefactor)[0]

    @staticmethod
    def backward(ctx, grad):
        distances, smearing, prefactor = ctx.saved_tensors
        return grad * _PairSlopes.apply(distances, smearing, prefactor), None, None


class _CoulombPairSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, charges, indices, distances, smearing, prefactor, full):
        first, second = columns_for(indices, distances)
        ctx.constants = (smearing, prefactor, full)
        ctx.kernels = fused.kernels_for(distances)
        if ctx.kernels is not None:  # one fused kernel; v, v' kept as needed
            potential, ctx.values, ctx.derivatives = ctx.kernels.coulomb_pair_sum(
                charges, first, second, distances, smearing, prefactor, full,
                charges.requires_grad, distances.requires_grad,
            )  # fmt: skip
            ctx.save_for_backward(charges, distances, first, second)
            ctx.products = None
            return potential
        n_pairs = distances.shape[0]
        # what the backward needs is written chunk by chunk into pair-sized buffers
        kept = distances.new_empty(n_pairs) if charges.requires_grad else None
        products = None  # q_i q_j v'(r_ij) per channel, for an energy's gradient
        derivatives: List[torch.Tensor] = []  # v'(r_ij) elsewhere (no shortcut)
        keep_derivatives = distances.requires_grad and not factors_possible(charges)
        if distances.requires_grad and not keep_derivatives:
            products = distances.new_empty((charges.shape[1], n_pairs))

        def values(start: int, stop: int):
            v, scaled, inverse = _pair_values(
                distances[start:stop], smearing, prefactor
            )
            if kept is not None:
                kept[start:stop] = v
            if products is None and not keep_derivatives:
                return v, None
            derivative = _pair_derivatives(v, scaled, inverse, smearing, prefactor)
            if keep_derivatives:
                derivatives.append(derivative)
                return v, None
            return v, derivative

        potential = _pair_sum(charges, first, second, values, full, products)
        ctx.save_for_backward(charges, distances, first, second)
        ctx.values, ctx.products = kept, products
        # on accelerators one chunk: v' is kept as computed, not evaluated again
        ctx.derivatives = None
        if derivatives:
            ctx.derivatives = (
                torch.cat(derivatives) if len(derivatives) > 1 else derivatives[0]
            )
        return potential

    @staticmethod
    def backward(ctx, grad):
        charges, distances, first, second = ctx.saved_tensors
        smearing, prefactor, full = ctx.constants
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives, differentiable
            # int64 columns: differentiated, the gathers become row additions by
            # index, which on CPU are several times slower with int32 indices
            first, second = first.long(), second.long()
            grad_charges = grad_distances = None
            if needs[0]:
                values = _PairValues.apply(distances, smearing, prefactor)
                grad_charges = _pair_sum(grad, second, first, _slices(values), full)
            if needs[2]:
                overlap = _pair_overlap(grad, charges, first, second, full)
                slopes = _PairSlopes.apply(distances, smearing, prefactor)
                grad_distances = 0.5 * overlap * slopes
            return grad_charges, None, grad_distances, None, None, None
        if ctx.kernels is not None:
            grad_charges, grad_distances = ctx.kernels.coulomb_pair_sum_backward(
                grad, charges, first, second, ctx.values if needs[0] else None,
                ctx.derivatives if needs[2] else None, full,
            )  # fmt: skip
            return grad_charges, None, grad_distances, None, None, None
        grad_charges = grad_distances = None
        if needs[0]:
            # the adjoint sends the gradient back along each stored pair
            values = _slices(ctx.values)
            grad_charges = _pair_sum(grad, second, first, values, full)
        if needs[2]:
            factors = None
            if ctx.products is not None:
                factors = channel_factors(grad, charges)
            if factors is not None:
                # g = c·q (an energy): c · q_i q_j v', kept from the forward
                weight = 0.5 if full else 1.0
                if len(factors) == 1:
                    grad_distances = ctx.products[0] * (weight * factors[0])
                else:
                    c = torch.tensor(factors, dtype=grad.dtype, device=grad.device)
                    grad_distances = (c.unsqueeze(-1) * ctx.products).sum(0)
                    grad_distances.mul_(weight)
            else:
                overlap = _pair_overlap(grad, charges, first, second, full)
                derivatives = ctx.derivatives
                if derivatives is None:
                    derivatives = _derivatives(distances, smearing, prefactor)
                grad_distances = overlap.mul_(derivatives).mul_(0.5)
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
