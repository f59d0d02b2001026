"""Point charges and dipoles together: potentials and fields by the direct sum or
by Ewald splitting with the long range on a PME or P3M mesh.

Atom ``j`` carries a charge ``q_j`` and a dipole ``μ_j``; its potential at ``r``
(``R = r − r_j``) is ``q_j/R + μ_j·R/R³``. For each atom the result is the
potential ``φ_i`` and the field ``E_i = −∇φ_i`` of all the others (and their
periodic images), and the energy is

.. math::

    E = \\tfrac12 \\sum_i (q_i φ_i − μ_i·E_i),

with a conducting (tin-foil) boundary for crystals; a net charge is neutralised
by a uniform background. Forces ``−∂E/∂r_i``, the stress and the torques
``μ_i × E_i`` follow by autograd (twice differentiable). The split is Ewald's
with ``α = 1/(√2 σ)``: the pairs (:mod:`torchpme._core.multipole_pairs`), the
mesh (:mod:`torchpme._core.multipole_mesh`: dipoles spread with the derivatives
of the interpolation weights, in the same pass as the charges) and the self
terms ``φ_self = −2α q/√π`` and ``E_self = 4α³ μ/(3√π)``.

Reference: Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
doi:10.1063/1.1605941; Cerdà et al., J. Chem. Phys. 129, 234104 (2008),
doi:10.1063/1.3000389.
"""

import math
from typing import Optional, Tuple

import torch

from ._core.multipole_mesh import convolve_multipoles, multipole_plan
from ._core.multipole_pairs import multipole_pair_fields
from ._core.validation import check_like, check_shape, message
from .calculators import Calculator, PMECalculator
from .potentials import CoulombPotential

__all__ = ["MultipoleCalculator"]


class MultipoleCalculator(torch.nn.Module):
    """Potentials and fields of point charges and dipoles (module docstring).

    Args:
        calculator: what sets the method and its parameters:
            ``Calculator(CoulombPotential())`` for the bare sum over the pairs
            given (clusters), or a :class:`~torchpme.PMECalculator` /
            :class:`~torchpme.P3MCalculator` of a
            ``CoulombPotential(smearing=σ)`` for crystals (P3M's B-splines keep
            the dipolar energy smooth in the positions; PME's Lagrange weights
            do not).

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> calculator = MultipoleCalculator(Calculator(CoulombPotential()))
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
        >>> dipoles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
        >>> pairs, vectors = torch.tensor([[0, 1]]), positions[1:] - positions[:1]
        >>> energy = calculator.energy(torch.zeros(2), dipoles, torch.zeros(3, 3),
        ...                            positions, pairs, vectors)
        >>> float(energy)  # −2μ²/r³
        -0.25
    """

    def __init__(self, calculator: torch.nn.Module):
        super().__init__()
        potential = getattr(calculator, "potential", None)
        if not isinstance(potential, CoulombPotential):
            raise TypeError(
                message("calculator", "a calculator with a CoulombPotential",
                        type(potential).__name__)
            )  # fmt: skip
        is_mesh = isinstance(calculator, PMECalculator)
        if potential.smearing is not None and not is_mesh:
            raise TypeError(
                message("calculator", "Calculator (bare sum), PMECalculator or "
                        "P3MCalculator", type(calculator).__name__)
            )  # fmt: skip
        if potential.smearing is None and type(calculator) is not Calculator:
            raise TypeError(
                message("calculator", "a PME or P3M calculator with a smearing",
                        f"{type(calculator).__name__} without one")
            )  # fmt: skip
        self.calculator = calculator
        self.alpha = (
            0.0
            if potential.smearing is None
            else 1.0 / (math.sqrt(2.0) * potential.smearing)
        )

    def forward(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(φ, E)``: ``(N,)`` potentials and ``(N, 3)`` fields at the atoms.

        Args:
            charges: ``(N,)`` charges; dipoles: ``(N, 3)`` dipoles.
            cell: ``(3, 3)`` cell (rows the lattice vectors; ignored by the bare
                sum).
            positions: ``(N, 3)`` positions.
            neighbor_indices: ``(P, 2)`` pairs ``(i, j)`` within the cutoff
                (half or full as the calculator's ``full_neighbor_list``).
            neighbor_vectors: ``(P, 3)`` their vectors ``r_j − r_i + n·A``.
            periodic: ``None`` or all ``True`` with a mesh calculator; the bare
                sum takes any (it sums the pairs given).
        """
        self._check(charges, dipoles, cell, positions, neighbor_indices,
                    neighbor_vectors, periodic)  # fmt: skip
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        potential, field = multipole_pair_fields(
            charges, dipoles, neighbor_indices, neighbor_vectors, self.alpha,
            bool(self.calculator.full_neighbor_list),
        )  # fmt: skip
        potential, field = prefactor * potential, prefactor * field
        if self.alpha == 0.0:
            return potential, field
        mesh_potential, mesh_field = self._mesh(charges, dipoles, cell, positions)
        a = self.alpha
        potential = (
            potential
            + mesh_potential
            - prefactor * 2.0 * a / math.sqrt(math.pi) * charges
        )
        field = (
            field
            + mesh_field
            + prefactor * 4.0 * a**3 / (3.0 * math.sqrt(math.pi)) * dipoles
        )
        return potential, field

    def energy(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``E = ½ Σ_i (q_i φ_i − μ_i·E_i)``, a 0-dim tensor."""
        potential, field = self.forward(
            charges, dipoles, cell, positions, neighbor_indices, neighbor_vectors,
            periodic,
        )  # fmt: skip
        return 0.5 * ((charges * potential).sum() - (dipoles * field).sum())

    def _mesh(self, charges, dipoles, cell, positions):
        """The reciprocal part on the mesh, with the background of a net
        charge: ``(φ, E)``."""
        mesh = self.calculator
        ns = mesh._mesh_size(cell)
        inverse_cell = torch.linalg.inv_ex(cell)[0]
        plan = multipole_plan(positions, inverse_cell, ns, mesh.scheme)
        kernel = mesh._filter(cell, ns)
        volume = torch.abs(torch.linalg.det(cell))
        potential, gradient = convolve_multipoles(
            plan, charges, dipoles, inverse_cell, kernel
        )
        prefactor = mesh.potential.prefactor.to(charges.dtype)
        background = prefactor * math.pi * charges.sum() / (self.alpha**2 * volume)
        return potential / volume - background, -gradient / volume

    def _check(self, charges, dipoles, cell, positions, indices, vectors, periodic):
        n = positions.shape[0]
        check_shape("positions", positions, [-1, 3], "(N, 3)")
        check_shape("charges", charges, [n], "(N,) with N atoms")
        check_shape("dipoles", dipoles, [n, 3], "(N, 3) with N atoms")
        check_shape("cell", cell, [3, 3], "(3, 3)")
        check_shape("neighbor_indices", indices, [-1, 2], "(P, 2)")
        check_shape("neighbor_vectors", vectors, [indices.shape[0], 3], "(P, 3)")
        for name, value in (
            ("charges", charges),
            ("dipoles", dipoles),
            ("cell", cell),
            ("neighbor_vectors", vectors),
        ):
            check_like(name, value, positions, "positions")  # fmt: skip
        if self.alpha > 0.0 and periodic is not None and not bool(periodic.all()):
            raise ValueError(
                message("periodic", "None or all True (a crystal) with a mesh",
                        f"{periodic.tolist()}")
            )  # fmt: skip
