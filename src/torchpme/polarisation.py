"""Induced dipoles: the self-consistent response of isotropic polarisabilities.

Atom ``i`` of polarisability ``α_i`` in the field ``E⁰_i`` of the permanent
multipoles takes the dipole ``μ_i = α_i (E⁰_i + Σ_j T_ij μ_j)``, with ``T μ`` the
field of the induced dipoles themselves (all of them and their periodic images,
as a :class:`~torchpme.multipoles.MultipoleCalculator` computes it, its own
excluded). The dipoles minimise

.. math::

    U(μ) = \\tfrac12 \\sum_i \\frac{μ_i²}{α_i} − \\tfrac12 μᵀ T μ − μ·E⁰,

solving ``(α⁻¹ − T) μ = E⁰``; at the minimum ``U = −½ μ·E⁰``, the polarisation
energy. ``α⁻¹ − T`` is applied by one calculator call (charges zero), and the
solve is :class:`torchpme._core.solve.Solver`'s conjugate gradients with the
preconditioner ``α⁻¹``; the dipoles are differentiable, twice, with respect to
the polarisabilities, the permanent field (and through it whatever made it),
positions, cell and pair vectors, by the implicit function (no unrolled
iterations).

Point polarisabilities close together polarise each other without bound (the
"polarisation catastrophe": ``α⁻¹ − T`` loses its positive definiteness, and the
solve stops naming ``polarisabilities``). Thole's damping removes it: with
``u = r/(α_iα_j)^{1/6}`` the dipole field tensor ``(3RR − r²I)/r⁵`` of the pairs
in the list becomes ``(3λ₅RR − λ₃r²I)/r⁵``, ``λ₃ = 1 − e^{−a u³}``,
``λ₅ = 1 − (1 + a u³) e^{−a u³}`` (``thole = a``, e.g. 0.39): Thole, Chem. Phys.
59, 341 (1981), doi:10.1016/0301-0104(81)85176-2; van Duijnen & Swart, J. Phys.
Chem. A 102, 2399 (1998), doi:10.1021/jp980221f. The damping acts between induced
dipoles; a damped permanent field is the caller's to pass.
"""

from typing import NamedTuple, Optional

import torch

from ._core import defaults
from ._core.solve import Solver, attach
from ._core.validation import check_finite, check_like, check_shape, message
from .multipoles import MultipoleCalculator

__all__ = ["Induced", "induce", "stationary_energy"]


class Induced(NamedTuple):
    """What :func:`induce` returns."""

    #: ``(N, 3)`` induced dipoles, differentiable (implicit function)
    dipoles: torch.Tensor
    #: conjugate-gradient iterations of the solve
    iterations: int


def induce(
    calculator: MultipoleCalculator,
    polarisabilities: torch.Tensor,
    field: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    periodic: Optional[torch.Tensor] = None,
    thole: Optional[float] = None,
    initial: Optional[torch.Tensor] = None,
    tolerance: Optional[float] = None,
    max_iterations: int = 1000,
) -> Induced:
    """The induced dipoles ``(N, 3)`` of one system (module docstring).

    Args:
        calculator: the :class:`~torchpme.multipoles.MultipoleCalculator` whose
            dipole field is ``T``.
        polarisabilities: ``(N,)`` ``α_i > 0`` (volume units, length³).
        field: ``(N, 3)`` the permanent field ``E⁰`` at the atoms.
        cell, positions, neighbor_indices, neighbor_vectors, periodic: the
            system, as for the calculator.
        thole: Thole's ``a`` (damping of the pairs in the list), or None.
        initial: ``(N, 3)`` dipoles to start from (the previous MD step's).
        tolerance: relative residual ``‖α (E⁰ − Aμ)‖ / ‖α E⁰‖`` to reach
            (default 1e-8 in float64, 1e-5 in float32).
        max_iterations: conjugate-gradient iterations allowed.

    Returns:
        :class:`Induced`; the polarisation energy is ``−½ (dipoles * field).sum()``.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> calculator = MultipoleCalculator(Calculator(CoulombPotential()))
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> field = torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, 0.1]])
        >>> pairs, vectors = torch.tensor([[0, 1]]), positions[1:] - positions[:1]
        >>> induced = induce(calculator, torch.tensor([1.0, 1.0]), field,
        ...                  torch.zeros(3, 3), positions, pairs, vectors)
        >>> round(float(induced.dipoles[0, 2]), 6)  # 0.1/(1 − 2/27)
        0.108
    """
    n = positions.shape[0]
    check_shape("polarisabilities", polarisabilities, [n], "(N,) with N atoms")
    check_shape("field", field, [n, 3], "(N, 3) with N atoms")
    for name, value in (("polarisabilities", polarisabilities), ("field", field)):
        check_like(name, value, positions, "positions")
        check_finite(name, value)
    if not bool((polarisabilities > 0).all()):
        raise ValueError(message("polarisabilities", "> 0", "values <= 0"))
    if thole is not None and not thole > 0.0:
        raise ValueError(message("thole", "a number > 0 or None", f"{thole}"))
    if initial is not None:
        check_shape("initial", initial, [n, 3], "(N, 3) dipoles")
    if tolerance is None:
        tolerance = 1e-8 if positions.dtype == torch.float64 else 1e-5
    zeros = torch.zeros_like(polarisabilities)
    damped = None
    if thole is not None:
        damped = _damped_pairs(
            neighbor_indices, neighbor_vectors, polarisabilities, thole
        )

    def response(dipoles, alpha, c, r, vectors) -> torch.Tensor:
        """``(α⁻¹ − T) μ`` for ``(N, 3)`` dipoles."""
        _, own_field, _ = calculator(
            zeros, dipoles, c, r, neighbor_indices, vectors, periodic
        )
        if thole is not None and damped is not None:
            own_field = own_field + _thole_correction(
                dipoles, alpha, neighbor_indices[damped], vectors[damped], thole,
                bool(calculator.calculator.full_neighbor_list),
            )  # fmt: skip
        return dipoles / alpha.unsqueeze(1) - own_field

    fixed = [x.detach() for x in (polarisabilities, cell, positions, neighbor_vectors)]

    def operator(flat: torch.Tensor) -> torch.Tensor:
        return response(flat.reshape(n, 3), *fixed).reshape(-1)

    diagonal = (1.0 / polarisabilities.detach()).repeat_interleave(3)
    solver = Solver(
        operator, diagonal, None, tolerance, max_iterations, "polarisabilities",
        "small enough (or thole damping) for a positive definite α⁻¹ − T: a "
        "polarisation catastrophe",
    )  # fmt: skip
    with torch.no_grad():
        start = None if initial is None else initial.detach().reshape(-1)
        flat, iterations = solver.minimum(-field.detach().reshape(-1), zeros[:0], start)

    def residual_of(x: torch.Tensor) -> torch.Tensor:
        dipoles = x.reshape(n, 3)
        applied = response(dipoles, polarisabilities, cell, positions, neighbor_vectors)
        return (applied - field).reshape(-1)

    inputs = (polarisabilities, field, cell, positions, neighbor_vectors)
    tracked = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
    flat = attach(flat, residual_of, solver, 2 if tracked else 1)
    return Induced(flat.reshape(n, 3), iterations)


def stationary_energy(
    induced: torch.Tensor,
    polarisabilities: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    thole: Optional[float] = None,
    full_neighbor_list: bool = False,
) -> torch.Tensor:
    """``½ mᵀα⁻¹m − ½ mᵀ(T − T_bare)m`` at fixed induced dipoles ``m`` ``(N, 3)``:
    what the polarisation adds to the energy of the permanent moments evaluated
    with ``μ + m``, so that their sum is ``E_0(μ) + U(m)`` (module docstring).
    ``U`` is stationary in ``m`` at the solution, so its gradients at fixed
    ``m`` are those of the self-consistent energy (no solve differentiated).
    The Thole term runs over the given pairs (``(P, 2)``, vectors ``(P, 3)``)."""
    energy = 0.5 * (induced**2 / polarisabilities.unsqueeze(1)).sum()
    if thole is None:
        return energy
    damped = _damped_pairs(
        neighbor_indices, neighbor_vectors.detach(), polarisabilities, thole
    )
    change = _thole_correction(
        induced, polarisabilities, neighbor_indices[damped],
        neighbor_vectors[damped], thole, full_neighbor_list,
    )  # fmt: skip
    return energy - 0.5 * (induced * change).sum()


def _damped_pairs(indices, vectors, alpha, a) -> torch.Tensor:
    """The pairs Thole's damping changes beyond rounding (``a u³ <``
    :data:`torchpme._core.defaults.THOLE_REACH`), chosen once per solve."""
    with torch.no_grad():
        cubes = torch.linalg.norm(vectors, dim=1) ** 3
        u3 = a * cubes / torch.sqrt(alpha[indices[:, 0]] * alpha[indices[:, 1]])
        return torch.nonzero(u3 < defaults.THOLE_REACH).squeeze(1)


def _thole_correction(dipoles, alpha, indices, vectors, a, full_neighbor_list):
    """The change of the dipole field at every atom from Thole's damping of the
    listed pairs: ``[3(λ₅ − 1)(μ·R)R − (λ₃ − 1)r²μ]/r⁵``."""
    i, j = indices[:, 0], indices[:, 1]
    r2 = (vectors**2).sum(dim=1)
    distance = torch.sqrt(r2)
    u3 = a * distance**3 / torch.sqrt(alpha[i] * alpha[j])
    decay = torch.exp(-u3)
    lambda3, lambda5 = -decay, -(1.0 + u3) * decay  # λ − 1
    correction = torch.zeros_like(dipoles)
    directions = [(i, j)] if full_neighbor_list else [(i, j), (j, i)]
    for target, source in directions:
        mu = dipoles[source]
        projection = (mu * vectors).sum(dim=1, keepdim=True)
        term = 3.0 * lambda5.unsqueeze(1) * projection * vectors
        term = term - lambda3.unsqueeze(1) * r2.unsqueeze(1) * mu
        correction = correction.index_add(
            0, target, term / (r2 * r2 * distance).unsqueeze(1)
        )
    return correction
