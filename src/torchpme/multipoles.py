"""Point charges, dipoles and quadrupoles: potentials, fields and field gradients
by the direct sum or by Ewald splitting with the long range on a PME or P3M mesh.

Atom ``j`` carries a charge ``q_j``, a dipole ``μ_j`` and optionally a traceless
quadrupole ``Θ_j`` (Buckingham's, ``Θ = ½ Σ q (3ss − s²I)``); its potential at
``r`` (``R = r − r_j``) is ``q_j/R + μ_j·R/R³ + R·Θ_j·R/R⁵``. For each atom the
result is the potential ``φ_i``, the field ``E_i = −∇φ_i`` and (on request) its
gradient ``G_i = ∇E_i`` of all the others (and their periodic images), and the
energy is

.. math::

    E = \\tfrac12 \\sum_i (q_i φ_i − μ_i·E_i − ⅓ Θ_i:G_i),

with a conducting (tin-foil) boundary for crystals; a net charge is neutralised
by a uniform background. Forces ``−∂E/∂r_i``, the stress and the torques
``μ_i × E_i`` (plus ``⅔ ε Θ G`` for quadrupoles) follow by autograd (twice
differentiable). The split is Ewald's with ``α = 1/(√2 σ)``: the pairs
(:mod:`torchpme._core.multipole_pairs`), the mesh
(:mod:`torchpme._core.multipole_mesh`: dipoles and quadrupoles spread with the
derivatives of the interpolation weights, in the same pass as the charges) and
the self terms ``φ_self = −2αq/√π``, ``E_self = 4α³μ/(3√π)`` and
``G_self = −4α³qI/(3√π) + 16α⁵Θ/(15√π)``.

Reference: Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
doi:10.1063/1.1605941; Cerdà et al., J. Chem. Phys. 129, 234104 (2008),
doi:10.1063/1.3000389.
"""

import math
from typing import Final, Optional, Tuple

import torch

from ._core.multipole_mesh import convolve_multipoles, multipole_plan
from ._core.multipole_pairs import multipole_pair_energy, multipole_pair_fields
from ._core.validation import check_like, check_shape, message
from .calculators import Calculator, PMECalculator
from .calculators._multipole_batch import multipole_mesh_batch
from .potentials import CoulombPotential

__all__ = ["MultipoleCalculator"]


class MultipoleCalculator(torch.nn.Module):
    """Potentials, fields and field gradients of point multipoles (module docstring).

    Args:
        calculator: what sets the method and its parameters:
            ``Calculator(CoulombPotential())`` for the bare sum over the pairs
            given (clusters), or a :class:`~torchpme.PMECalculator` /
            :class:`~torchpme.P3MCalculator` of a
            ``CoulombPotential(smearing=σ)`` for crystals (P3M's B-splines keep
            the dipolar energy smooth in the positions; PME's Lagrange weights
            do not).
        field_gradient: compute the field gradients ``G`` (needed for
            quadrupoles, and what a model of quadrupoles trains on); without
            it the third output is empty, ``(0, 3, 3)``.

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

    #: whether the long range runs on a mesh (a constant, so TorchScript
    #: compiles the mesh path only for mesh calculators)
    is_mesh: Final[bool]

    def __init__(self, calculator: torch.nn.Module, field_gradient: bool = False):
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
        self.is_mesh = is_mesh
        self.field_gradient = field_gradient
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
        quadrupoles: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(φ, E, G)``: ``(N,)`` potentials, ``(N, 3)`` fields and ``(N, 3, 3)``
        field gradients ``G_ab = ∂_a E_b`` at the atoms (``(0, 3, 3)`` without
        ``field_gradient``).

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
            quadrupoles: ``(N, 3, 3)`` symmetric traceless quadrupoles (needs
                ``field_gradient``).
        """
        self._check(charges, dipoles, cell, positions, neighbor_indices,
                    neighbor_vectors, periodic, quadrupoles)  # fmt: skip
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        potential, field, gradient = self._pairs(
            charges, dipoles, quadrupoles, neighbor_indices, neighbor_vectors,
            prefactor,
        )  # fmt: skip
        if not self.is_mesh:
            return potential, field, gradient
        order = 2 if self.field_gradient else 1
        mesh = self._mesh(charges, dipoles, quadrupoles, cell, positions, order)
        return self._with_mesh(
            potential, field, gradient, mesh, charges, dipoles, quadrupoles, prefactor
        )

    @torch.jit.unused
    def forward_batch(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        quadrupoles: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` of crystals packed along the atom axis: ``cells (B,
        3, 3)``, ``system_index (N,)`` the system of each atom, pairs indexing
        the packed atoms (never joining two systems). Systems of equal mesh size
        share stacked spreads, FFTs and gathers; each gets exactly its own
        :meth:`forward` result (the system's energy: ``energy`` terms summed over
        its atoms)."""
        n = positions.shape[0]
        check_shape("cells", cells, [-1, 3, 3], "(B, 3, 3)")
        check_shape("system_index", system_index, [n], "(N,) with N atoms")
        check_like("cells", cells, positions, "positions")
        self._check(charges, dipoles, cells[0], positions, neighbor_indices,
                    neighbor_vectors, None, quadrupoles)  # fmt: skip
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        potential, field, gradient = self._pairs(
            charges, dipoles, quadrupoles, neighbor_indices, neighbor_vectors,
            prefactor,
        )  # fmt: skip
        if not self.is_mesh:
            return potential, field, gradient
        mesh = multipole_mesh_batch(
            self.calculator, self.alpha, charges, dipoles, quadrupoles, cells,
            positions, system_index, 2 if self.field_gradient else 1,
        )  # fmt: skip
        return self._with_mesh(
            potential, field, gradient, mesh, charges, dipoles, quadrupoles, prefactor
        )

    def _pairs(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        quadrupoles: Optional[torch.Tensor],
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        prefactor: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pairs' ``(φ, E, G)``, in the units of the prefactor."""
        potential, field, gradient = multipole_pair_fields(
            charges, dipoles, quadrupoles, neighbor_indices, neighbor_vectors,
            self.alpha, bool(self.calculator.full_neighbor_list),
            self.field_gradient,
        )  # fmt: skip
        return prefactor * potential, prefactor * field, prefactor * gradient

    def _with_mesh(
        self,
        potential: torch.Tensor,
        field: torch.Tensor,
        gradient: torch.Tensor,
        mesh: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        quadrupoles: Optional[torch.Tensor],
        prefactor: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pairs' ``(φ, E, G)`` plus the mesh's and the self terms."""
        a, root = self.alpha, math.sqrt(math.pi)
        potential = potential + mesh[0] - prefactor * 2.0 * a / root * charges
        field = field + mesh[1] + prefactor * 4.0 * a**3 / (3.0 * root) * dipoles
        if self.field_gradient:
            eye = torch.eye(3, dtype=charges.dtype, device=charges.device)
            own = -4.0 * a**3 / (3.0 * root) * charges[:, None, None] * eye
            if quadrupoles is not None:
                own = own + 16.0 * a**5 / (15.0 * root) * quadrupoles
            gradient = gradient + mesh[2] + prefactor * own
        return potential, field, gradient

    def energy(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        quadrupoles: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``E = ½ Σ_i (q_i φ_i − μ_i·E_i − ⅓ Θ_i:G_i)``, a 0-dim tensor.

        Without quadrupoles the pairs' part is summed as one energy per pair
        (no field vectors per pair), which makes energy and forces faster than
        through :meth:`forward`; the number is the same.
        """
        if quadrupoles is None:
            return self._energy(
                charges, dipoles, cell, positions, neighbor_indices,
                neighbor_vectors, periodic,
            )  # fmt: skip
        potential, field, gradient = self.forward(
            charges, dipoles, cell, positions, neighbor_indices, neighbor_vectors,
            periodic, quadrupoles,
        )  # fmt: skip
        energy = (charges * potential).sum() - (dipoles * field).sum()
        if quadrupoles is not None:
            energy = energy - (quadrupoles * gradient).sum() / 3.0
        return 0.5 * energy

    def _energy(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_vectors: torch.Tensor,
        periodic: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """:meth:`energy` of charges and dipoles: pair energies, the mesh's
        ``½ Σ (q φ − μ·E)`` and the self energies."""
        self._check(charges, dipoles, cell, positions, neighbor_indices,
                    neighbor_vectors, periodic, None)  # fmt: skip
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        energy = prefactor * multipole_pair_energy(
            charges, dipoles, neighbor_indices, neighbor_vectors, self.alpha,
            bool(self.calculator.full_neighbor_list),
        )  # fmt: skip
        if not self.is_mesh:
            return energy
        potential, field, _ = self._mesh(charges, dipoles, None, cell, positions, 1)
        mesh = 0.5 * ((charges * potential).sum() - (dipoles * field).sum())
        a, root = self.alpha, math.sqrt(math.pi)
        own = (
            a / root * (charges**2).sum()
            + 2.0 * a**3 / (3.0 * root) * (dipoles**2).sum()
        )
        return energy + mesh - prefactor * own

    def _mesh(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        quadrupoles: Optional[torch.Tensor],
        cell: torch.Tensor,
        positions: torch.Tensor,
        order: int,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reciprocal part on the mesh, with the background of a net
        charge: ``(φ, E, G)``."""
        mesh = self.calculator
        ns = mesh._mesh_size(cell)
        inverse_cell = torch.linalg.inv_ex(cell)[0]
        plan = multipole_plan(positions, inverse_cell, ns, mesh.scheme, order)
        kernel = mesh._filter(cell, ns)
        volume = torch.abs(torch.linalg.det(cell))
        if quadrupoles is None:
            quadrupoles = charges.new_zeros(charges.shape[0], 3, 3)
        potential, gradient, hessian = convolve_multipoles(
            plan, charges, dipoles, quadrupoles, inverse_cell, kernel
        )
        prefactor = mesh.potential.prefactor.to(charges.dtype)
        background = prefactor * math.pi * charges.sum() / (self.alpha**2 * volume)
        return (potential / volume - background, -gradient / volume, -hessian / volume)

    def _check(
        self,
        charges: torch.Tensor,
        dipoles: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        indices: torch.Tensor,
        vectors: torch.Tensor,
        periodic: Optional[torch.Tensor],
        quadrupoles: Optional[torch.Tensor],
    ) -> None:
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
        if quadrupoles is not None:
            if not self.field_gradient:
                raise ValueError(
                    message("quadrupoles", "given to a MultipoleCalculator with "
                            "field_gradient=True (their energy needs it)",
                            "field_gradient=False")
                )  # fmt: skip
            check_shape("quadrupoles", quadrupoles, [n, 3, 3], "(N, 3, 3)")
            check_like("quadrupoles", quadrupoles, positions, "positions")
            trace = quadrupoles.diagonal(dim1=1, dim2=2).sum(-1)
            asymmetry = (quadrupoles - quadrupoles.transpose(1, 2)).abs().max()
            scale = quadrupoles.abs().max() * 1e-10
            if bool(trace.abs().max() > scale) or bool(asymmetry > scale):
                raise ValueError(
                    message("quadrupoles", "symmetric and traceless (Buckingham)",
                            "a trace or an antisymmetric part")
                )  # fmt: skip
        if self.alpha > 0.0 and periodic is not None and not bool(periodic.all()):
            raise ValueError(
                message("periodic", "None or all True (a crystal) with a mesh",
                        "an open direction")
            )  # fmt: skip
