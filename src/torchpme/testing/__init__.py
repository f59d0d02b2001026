"""Helpers to test code built on torchpme: invariances, adjointness, gradients.

Physical results must not depend on how a system is written down: translating it,
renumbering its atoms, moving an atom by a lattice vector, rotating the whole
system (cell included) or describing it with a supercell leaves the per-atom
potentials unchanged (forces rotate with the system; a supercell's energy is the
sum of its copies). The checks below compare a computation with itself under
such transformations, so they need no reference values; they raise
``AssertionError`` with the largest deviation when a property fails.

Most checks take a *system function* ``fn(charges, cell, positions) -> Tensor``
that returns one row per atom, shape ``(N, ...)`` (e.g. a calculator's per-atom
potentials ``(N, C)``, with the neighbour list computed inside ``fn``). The energy
of a system function is ``E = Σ charges · fn(charges, cell, positions)``.

Tolerances default to :data:`TOLERANCES`, by the dtype of ``positions``; the
float32 entries allow for the rounding of sums of a few thousand terms.

Example:
    >>> import torch
    >>> from torchpme import Calculator, CoulombPotential
    >>> calculator = Calculator(CoulombPotential())
    >>> pairs = torch.tensor([[0, 1]])
    >>> def fn(charges, cell, positions):
    ...     distances = torch.linalg.norm(positions[1] - positions[0]).reshape(1)
    ...     return calculator(charges, cell, positions, pairs, distances)
    >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    >>> positions = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    >>> cell = torch.eye(3, dtype=torch.float64)
    >>> check_rotation_invariance(fn, charges, cell, positions, random_rotation())
"""

from ._gradients import check_spread_gather_adjoint, gradcheck, gradgradcheck
from ._invariance import (
    check_channel_superposition,
    check_charge_scaling,
    check_lattice_shift_invariance,
    check_permutation_equivariance,
    check_rotation_invariance,
    check_supercell_extensivity,
    check_translation_invariance,
)
from ._tools import (
    TOLERANCES,
    SystemFunction,
    assert_close,
    directional_derivative,
    energy,
    forces,
    random_rotation,
    strain_derivative,
    supercell,
    tolerance,
)

__all__ = [
    "TOLERANCES",
    "assert_close",
    "check_channel_superposition",
    "check_charge_scaling",
    "check_lattice_shift_invariance",
    "check_permutation_equivariance",
    "check_rotation_invariance",
    "check_spread_gather_adjoint",
    "check_supercell_extensivity",
    "check_translation_invariance",
    "directional_derivative",
    "energy",
    "forces",
    "gradcheck",
    "gradgradcheck",
    "random_rotation",
    "strain_derivative",
    "supercell",
    "tolerance",
]
