"""Helpers shared by the hand-written autograd Functions of ``_core``.

:func:`energies` and :func:`per_atom_upstream` serve the energy Functions
(``E = Σ q · φ`` in all, or per system): their backward passes know that the
upstream gradient of the potentials is ``(∂L/∂E) · q``, and these say which
``∂L/∂E`` each atom gets.

:func:`replay` gives second derivatives: a Function whose backward is written by
hand re-runs its forward as differentiable operations and lets autograd
differentiate that (as activation checkpointing does).
"""

from typing import Optional, Sequence, Tuple

import torch

__all__ = ["energies", "per_atom_upstream", "replay"]


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


def energies(
    values: torch.Tensor,
    potentials: torch.Tensor,
    owners: Optional[torch.Tensor],
    n_groups: int,
) -> torch.Tensor:
    """``Σ_ic values_ic potentials_ic`` (0-dim), or with ``owners`` (``(N,)``, the
    group of each row: a system, a mesh) the ``(n_groups,)`` sums per group."""
    if owners is None:
        return torch.sum(values * potentials)
    per_atom = torch.sum(values * potentials, dim=1)
    return per_atom.new_zeros(n_groups).index_add(0, owners, per_atom)


def per_atom_upstream(grad: torch.Tensor, owners: Optional[torch.Tensor]):
    """The upstream gradient of each row's energy: ``grad`` (0-dim) itself, or
    that of its group, ``(N, 1)``."""
    if owners is None:
        return grad
    return grad.index_select(0, owners).unsqueeze(1)
