"""The real-space pair energy of charges and dipoles as one autograd Function.

With ``v = r_j − r_i`` the stored pair vector (``R = −v``), ``s_i = μ_i·v`` and
``s_j = μ_j·v``, the energy of a pair (:func:`~torchpme._core.multipole_pairs.\
multipole_pair_energy`) is

.. math::

    e = q_i q_j B_0 + (q_j s_i − q_i s_j + μ_i·μ_j) B_1 − s_i s_j B_2,

and with ``dB_l/dv = −v B_{l+1}`` its gradients are

.. math::

    ∂e/∂q_i = q_j B_0 − s_j B_1, \\qquad ∂e/∂q_j = q_i B_0 + s_i B_1,

    ∂e/∂μ_i = a_i v + B_1 μ_j, \\qquad ∂e/∂μ_j = a_j v + B_1 μ_i,

    ∂e/∂v = a_i μ_i + a_j μ_j − c v,

with ``a_i = q_j B_1 − s_j B_2``, ``a_j = −q_i B_1 − s_i B_2`` and
``c = q_i q_j B_1 + (q_j s_i − q_i s_j + μ_i·μ_j) B_2 − s_i s_j B_3``.

Through plain autograd every elementwise step over the ``P`` pairs is stored and
replayed backward; here the forward evaluates these gradients along with the
energy, which they share gathers, dot products and ``B_l`` with, and keeps them.
The formulas are written as differentiable operations on the inputs: a backward
pass with gradients on (forces in a loss) evaluates them again from the saved
inputs and autograd differentiates that. The pairs are handled in separate ``x``, ``y``, ``z``
columns: on CPU, products of ``(P, 3)`` rows with ``(P, 1)`` scalars and sums over
the last axis of 3 are several times slower than the same work on ``(P,)``
columns.
"""

from typing import List, Optional, Tuple

import torch

from . import defaults
from .execution import chunk_length
from .multipole_pairs import radial_functions

__all__ = ["pair_energy_function"]


def _columns(rows: torch.Tensor) -> List[torch.Tensor]:
    """The three contiguous columns of ``(M, 3)`` rows."""
    return [column.contiguous() for column in rows.unbind(1)]


def _dot(a: List[torch.Tensor], b: List[torch.Tensor]) -> torch.Tensor:
    return torch.addcmul(torch.addcmul(a[0] * b[0], a[1], b[1]), a[2], b[2])


def _pair_terms(charges, dipoles, first, second, vectors, alpha: float, count: int):
    """What the energy and its gradients share, per pair: the gathered charges
    and dipole columns, the vector columns ``v``, ``s_i``, ``s_j``, ``μ_i·μ_j``
    and ``[B_0 … B_{count−1}]``."""
    v = _columns(vectors)
    mu = _columns(dipoles)
    qi, qj = charges.index_select(0, first), charges.index_select(0, second)
    mi = [column.index_select(0, first) for column in mu]
    mj = [column.index_select(0, second) for column in mu]
    b = radial_functions(torch.sqrt(_dot(v, v)), alpha, count)
    return qi, qj, mi, mj, v, _dot(mi, v), _dot(mj, v), _dot(mi, mj), b


def _pair_energy_gradients(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float,
    needs: Tuple[bool, bool, bool],
    with_energy: bool = False,
    out: Optional[torch.Tensor] = None,
) -> Tuple[
    Optional[torch.Tensor],
    Optional[torch.Tensor],
    Optional[torch.Tensor],
    Optional[torch.Tensor],
]:
    """The energy ``Σ e`` and its gradients (module docstring) in differentiable
    operations.

    Args:
        charges: ``(N,)``; dipoles: ``(N, 3)``.
        first, second: ``(P,)`` the atoms ``i`` and ``j`` of each pair.
        vectors: ``(P, 3)`` the vectors ``v = r_j − r_i``.
        alpha: the screening (0 for the bare sum).
        needs: which of the three gradients to return.
        with_energy: whether to return the energy.
        out: ``(P, 3)`` rows to write ``∂/∂v`` into, outside autograd.

    Returns:
        ``(Σ e (0-dim), ∂/∂q (N,), ∂/∂μ (N, 3), ∂/∂v (P, 3))``, None where not
        asked for.
    """
    count = 4 if needs[2] else 3
    qi, qj, mi, mj, v, si, sj, mm, b = _pair_terms(
        charges, dipoles, first, second, vectors, alpha, count
    )
    # the factors of B_0, B_1 and B_2 in e are those of B_1, B_2 and B_3 in c
    qq, mixed, ss = qi * qj, qj * si - qi * sj + mm, si * sj
    energy = grad_charges = grad_dipoles = grad_vectors = None
    if with_energy:
        energy = (qq * b[0] + mixed * b[1] - ss * b[2]).sum()
    if needs[0]:
        grad_charges = (
            torch.zeros_like(charges)
            .index_add(0, first, qj * b[0] - sj * b[1])
            .index_add(0, second, qi * b[0] + si * b[1])
        )
    if not (needs[1] or needs[2]):
        return energy, grad_charges, grad_dipoles, grad_vectors
    ai = qj * b[1] - sj * b[2]
    aj = -(qi * b[1] + si * b[2])
    if needs[1]:
        columns = [
            torch.zeros_like(charges)
            .index_add(0, first, torch.addcmul(ai * v[k], b[1], mj[k]))
            .index_add(0, second, torch.addcmul(aj * v[k], b[1], mi[k]))
            for k in range(3)
        ]
        grad_dipoles = torch.stack(columns, dim=1)
    if needs[2]:
        c = qq * b[1] + mixed * b[2] - ss * b[3]
        columns = [
            torch.addcmul(torch.addcmul(ai * mi[k], aj, mj[k]), c, v[k], value=-1.0)
            for k in range(3)
        ]
        if out is None:
            grad_vectors = torch.stack(columns, dim=1)
        else:  # outside autograd: into the rows, cheaper than a stack and a copy
            for k in range(3):
                out[:, k] = columns[k]
            grad_vectors = out
    return energy, grad_charges, grad_dipoles, grad_vectors


def _chunked(charges, dipoles, first, second, vectors, alpha: float, needs):
    """:func:`_pair_energy_gradients` with the energy, outside autograd, over
    chunks of pairs (on CPU a chunk's temporaries stay in cache)."""
    n_pairs = first.shape[0]
    energy = charges.new_zeros(())
    grad_charges = torch.zeros_like(charges) if needs[0] else None
    grad_dipoles = torch.zeros_like(dipoles) if needs[1] else None
    grad_vectors = torch.empty_like(vectors) if needs[2] else None
    step = chunk_length(defaults.PAIRS, n_pairs, vectors.device)
    for start in range(0, n_pairs, step):
        stop = min(start + step, n_pairs)
        rows = None if grad_vectors is None else grad_vectors[start:stop]
        e, gq, gm, _ = _pair_energy_gradients(
            charges, dipoles, first[start:stop], second[start:stop],
            vectors[start:stop], alpha, needs, True, rows,
        )  # fmt: skip
        if e is not None:
            energy += e
        if grad_charges is not None and gq is not None:
            grad_charges += gq
        if grad_dipoles is not None and gm is not None:
            grad_dipoles += gm
    return energy, (grad_charges, grad_dipoles, grad_vectors)


class _PairEnergy(torch.autograd.Function):
    """``Σ e`` over the pairs (halved for a full list), 0-dim, with the analytic
    gradients of the module docstring.

    The forward evaluates the gradients its inputs need along with the energy
    (they share the gathers, dot products and ``B_l``) and keeps them for a
    backward pass without gradients; one with gradients on (second derivatives)
    recomputes them as differentiable operations on the saved inputs."""

    @staticmethod
    def forward(ctx, charges, dipoles, first, second, vectors, alpha, full, recorded):
        ctx.save_for_backward(charges, dipoles, first, second, vectors)
        ctx.alpha, ctx.scale = alpha, 0.5 if full else 1.0
        # ``needs_input_grad`` follows requires_grad even under no_grad, where no
        # backward pass will come: ``recorded`` is the caller's grad mode
        needs = ctx.needs_input_grad
        ctx.needs = tuple(recorded and needs[k] for k in (0, 1, 4))
        energy, ctx.grads = _chunked(
            charges, dipoles, first, second, vectors, alpha, ctx.needs
        )
        # out of place: an in-place output of a Function's forward misroutes its
        # gradient under torch.compile (see shortrange.py)
        return energy * ctx.scale

    @staticmethod
    def backward(ctx, grad):
        grads = ctx.grads
        if torch.is_grad_enabled():  # second derivatives
            charges, dipoles, first, second, vectors = ctx.saved_tensors
            grads = _pair_energy_gradients(
                charges, dipoles, first, second, vectors, ctx.alpha, ctx.needs
            )[1:]
        scale = grad * ctx.scale
        gq, gm, gv = [None if g is None else g * scale for g in grads]
        return gq, gm, None, None, gv, None, None, None


def pair_energy_function(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    alpha: float,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """:func:`~torchpme._core.multipole_pairs.multipole_pair_energy` through
    :class:`_PairEnergy` (eager mode only: autograd Functions are not
    scriptable)."""
    # contiguous once: every gather would otherwise copy its column of indices
    first = neighbor_indices[:, 0].contiguous()
    second = neighbor_indices[:, 1].contiguous()
    return _PairEnergy.apply(
        charges, dipoles, first, second, neighbor_vectors, alpha,
        full_neighbor_list, torch.is_grad_enabled(),
    )  # fmt: skip
