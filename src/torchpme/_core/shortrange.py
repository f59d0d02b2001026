"""The short-range Coulomb pair sum as one autograd Function.

``V_i = ½ Σ_j q_j v(r_ij)`` with ``v(r) = A erfc(r/√2σ)/r`` is the bulk of the
real-space work of Ewald, PME and P3M: through plain autograd every elementwise
step over the ``P`` pairs (clamp, divisions, ``erf``, the difference of the bare
and long-range parts, masks) is stored and replayed backward. Here the forward
computes the value and the derivative

.. math::

    v'(r) = −\\frac{1}{r}\\left(v(r) + A\\sqrt{\\tfrac{2}{π}}\\frac{e^{−r²/2σ²}}{σ}\\right)

in one pass. For the potentials (:func:`coulomb_pair_sum`) the forward keeps
``v'`` and the backward gathers the upstream gradient over the pairs once, for
the charges' and the distances' gradients in the same chunked pass. For the
energy (:func:`coulomb_pair_energy`) the upstream gradient of the potentials is
``(∂L/∂E) · q`` by construction, so the gradient of each distance is
``(∂L/∂E) q_i q_j v'(r_ij)``: the forward keeps these products and the backward is
a single multiplication per pair. Second
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

from . import defaults, execution
from .backward import energies, per_atom_upstream
from .execution import chunk_length
from .pairlist import columns

__all__ = ["coulomb_pair_energy", "coulomb_pair_sum"]


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


def _potential_gradients(grad, charges, first, second, values, derivatives, full):
    """The gradients of the potentials for an upstream ``g``, in one chunked pass
    over the pairs that gathers ``g`` once for both: the charges' (the adjoint
    sends ``½ g v`` back along each stored pair; with ``values`` ``v``) and the
    distances' (``½ (g_i q_j + g_j q_i) v'``; with ``derivatives`` ``v'``)."""
    n_pairs = first.shape[0]
    grad_charges = grad_distances = None
    if derivatives is not None:
        grad_distances = grad.new_zeros(n_pairs)
    g = [grad[:, channel].contiguous() for channel in range(grad.shape[1])]
    q = [charges[:, channel].contiguous() for channel in range(grad.shape[1])]
    columns = [torch.zeros_like(g_channel) for g_channel in g]
    step = chunk_length(defaults.PAIRS, n_pairs, first.device)
    for start in range(0, n_pairs, step):
        i, j = first[start : start + step], second[start : start + step]
        overlap = None
        if grad_distances is not None:
            overlap = grad_distances[start : start + step]
        for channel in range(len(g)):
            g_i = g[channel].index_select(0, i)
            g_j = None if full else g[channel].index_select(0, j)
            if overlap is not None:
                overlap.addcmul_(g_i, q[channel].index_select(0, j))
                if g_j is not None:
                    overlap.addcmul_(g_j, q[channel].index_select(0, i))
            if values is not None:
                v = values[start : start + step]
                columns[channel].index_add_(0, j, g_i.mul_(v))
                if g_j is not None:
                    columns[channel].index_add_(0, i, g_j.mul_(v))
        if overlap is not None:
            overlap.mul_(derivatives[start : start + step]).mul_(0.5)
    if values is not None:
        grad_charges = torch.mul(_stack(columns, 1), 0.5)
    return grad_charges, grad_distances


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
    """The pair sum ``φ`` ``(N, C)``, or with ``energy`` the energy ``Σ q · φ``
    (0-dim; per system ``(B,)`` with ``owners``, the system of each atom), whose
    upstream gradient is known to be ``(∂L/∂E) · q``: its backward multiplies the
    products ``q_i q_j v'(r_ij)`` kept by the forward, instead of gathering the
    upstream gradient over the pairs."""

    @staticmethod
    def forward(
        ctx, charges, first, second, distances, smearing, prefactor, full, energy,
        owners, n_systems,
    ):  # fmt: skip
        ctx.constants = (smearing, prefactor, full, energy)
        ctx.owners = owners
        ctx.kernels = execution.kernels_for(distances)
        if ctx.kernels is not None:  # one fused kernel; v, v' kept as needed
            potential, ctx.values, ctx.derivatives = ctx.kernels.coulomb_pair_sum(
                charges, first, second, distances, smearing, prefactor, full,
                charges.requires_grad, distances.requires_grad,
            )  # fmt: skip
            ctx.save_for_backward(charges, distances, first, second)
            ctx.products = None
            if not energy:
                return potential
            return energies(charges, potential, owners, n_systems)
        n_pairs = distances.shape[0]
        # what the backward needs is written chunk by chunk into pair-sized buffers
        kept = None  # v(r_ij), for the charges' gradient of the potentials
        if charges.requires_grad and not energy:
            kept = distances.new_empty(n_pairs)
        products = None  # q_i q_j v'(r_ij) per channel, for the energy's gradient
        derivatives: List[torch.Tensor] = []  # v'(r_ij), for the potentials'
        if distances.requires_grad and energy:
            products = distances.new_empty((charges.shape[1], n_pairs))
        keep_derivatives = distances.requires_grad and not energy

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
        ctx.values = kept
        ctx.products = None if products is None else products.sum(0)
        ctx.derivatives = None
        if derivatives:
            ctx.derivatives = (
                torch.cat(derivatives) if len(derivatives) > 1 else derivatives[0]
            )
        if not energy:
            return potential
        ctx.potential = potential  # ∂E/∂q = 2 φ (the pair sum is symmetric)
        return energies(charges, potential, owners, n_systems)

    @staticmethod
    def backward(ctx, grad):
        charges, _, first, second = ctx.saved_tensors
        full, energy = ctx.constants[2:]
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives, differentiable
            return _differentiable_gradients(ctx, grad)
        per_atom = per_atom_upstream(grad, ctx.owners) if energy else grad
        if energy and ctx.kernels is None:
            grad_charges = grad_distances = None
            if needs[0]:
                grad_charges = ctx.potential * (2.0 * per_atom)
            if needs[3]:
                # each stored pair carries the full q_i q_j v' of E (half the
                # ordered pair's share for a full list); a pair's system is
                # that of its atoms
                per_pair = grad
                if ctx.owners is not None:
                    per_pair = per_atom[:, 0].index_select(0, first)
                grad_distances = ctx.products * (per_pair * (0.5 if full else 1.0))
            return (grad_charges, None, None, grad_distances) + (None,) * 6
        upstream = per_atom * charges if energy else grad
        if ctx.kernels is not None:
            grad_charges, grad_distances = ctx.kernels.coulomb_pair_sum_backward(
                upstream, charges, first, second, ctx.values if needs[0] else None,
                ctx.derivatives if needs[3] else None, full,
            )  # fmt: skip
            if energy and grad_charges is not None:
                grad_charges = 2.0 * grad_charges  # q enters E twice
            return (grad_charges, None, None, grad_distances) + (None,) * 6
        grad_charges, grad_distances = _potential_gradients(
            grad, charges, first, second, ctx.values if needs[0] else None,
            ctx.derivatives if needs[3] else None, full,
        )  # fmt: skip
        return (grad_charges, None, None, grad_distances) + (None,) * 6


def _differentiable_gradients(ctx, grad):
    """The backward pass as differentiable expressions (forces in a loss); for an
    energy the upstream gradient of the potentials is ``grad · q`` and the
    charges enter twice."""
    charges, distances, first, second = ctx.saved_tensors
    smearing, prefactor, full, energy = ctx.constants
    needs = ctx.needs_input_grad
    upstream = per_atom_upstream(grad, ctx.owners) * charges if energy else grad
    # int64 columns: differentiated, the gathers become row additions by index,
    # which on CPU are several times slower with int32 indices
    first, second = first.long(), second.long()
    grad_charges = grad_distances = None
    if needs[0]:
        values = _PairValues.apply(distances, smearing, prefactor)
        grad_charges = _pair_sum(upstream, second, first, _slices(values), full)
        if energy:
            grad_charges = 2.0 * grad_charges
    if needs[3]:
        overlap = _pair_overlap(upstream, charges, first, second, full)
        slopes = _PairSlopes.apply(distances, smearing, prefactor)
        grad_distances = 0.5 * overlap * slopes
    return (grad_charges, None, None, grad_distances) + (None,) * 6


def _pair_function(
    charges, neighbor_indices, distances, smearing, prefactor, full, energy,
    owners=None, n_systems=0,
):  # fmt: skip
    first, second = columns(neighbor_indices)
    return _CoulombPairSum.apply(
        charges,
        first,
        second,
        distances.to(charges.dtype),
        smearing.detach().to(charges.dtype),
        prefactor.detach().to(charges.dtype),
        full,
        energy,
        owners,
        n_systems,
    )


def coulomb_pair_sum(
    charges: torch.Tensor,
    neighbor_indices,
    neighbor_distances: torch.Tensor,
    smearing: torch.Tensor,
    prefactor: torch.Tensor,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """Per-atom short-range Coulomb potential ``½ Σ_j q_j A erfc(r_ij/√2σ)/r_ij``.

    Args:
        charges: ``(N, C)``.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``, or a
            :class:`~torchpme._core.pairlist.PairList` (its kept columns).
        neighbor_distances: ``(P,)`` distances (> 0).
        smearing, prefactor: ``σ`` and ``A``, 0-dim tensors (constants: no gradient
            flows to them; use the composed form when one is needed).
        full_neighbor_list: whether every pair appears as ``(i, j)`` and ``(j, i)``.

    Returns:
        ``(N, C)`` potential, differentiable (twice) in charges and distances.
    """
    return _pair_function(
        charges, neighbor_indices, neighbor_distances, smearing, prefactor,
        full_neighbor_list, False,
    )  # fmt: skip


def coulomb_pair_energy(
    charges: torch.Tensor,
    neighbor_indices,
    neighbor_distances: torch.Tensor,
    smearing: torch.Tensor,
    prefactor: torch.Tensor,
    full_neighbor_list: bool,
    system_index: Optional[torch.Tensor] = None,
    n_systems: int = 0,
) -> torch.Tensor:
    """``Σ_ic q_ic φ_ic`` of :func:`coulomb_pair_sum`, whose backward pass is one
    multiplication per pair (arguments as there).

    Returns:
        The energy, 0-dim; with ``system_index`` (``(N,)``, the system of each
        atom; pairs never join two systems) the ``(n_systems,)`` energies of the
        systems.
    """
    return _pair_function(
        charges, neighbor_indices, neighbor_distances, smearing, prefactor,
        full_neighbor_list, True, system_index, n_systems,
    )  # fmt: skip
