"""From a structure to energy, forces and stress: the engine of the CLI and ASE front ends.

The steps, each a plain function so the front ends share them:

1. :func:`resolve_method` turns the user's ``method`` string into a concrete
   method once (``"direct"``, ``"ewald"``, ``"pme"`` or ``"p3m"``);
2. :func:`choose_parameters` (in :mod:`torchpme._cli.parameters`) keeps what the
   user fixed and tunes the rest of cutoff, smearing and k-space parameters
   through :mod:`torchpme.tuning`, with the error estimate of what will run;
3. :func:`build_calculator` makes the calculator;
4. :func:`evaluate` computes ``E = Σ_i q_i V_i``, forces ``F = −∂E/∂r`` and the
   stress ``σ = (1/V) ∂E/∂ε`` (ASE's sign convention: positive when the system
   pulls inwards), by differentiating through a homogeneous strain ``ε``
   applied to positions and cell, ``r → r (1 + ε)``, ``A → A (1 + ε)``.

Boundary conditions:

* periodic on all three axes: Ewald, PME or P3M with a neighbour list;
* periodic on two axes (a slab): PME or P3M compute the 2-D periodic sum
  exactly (``slab_method="exact"``: no vacuum needed, the cell's third vector
  is ignored); Ewald adds the Yeh–Berkowitz correction over the cell's vacuum,
  which must lie along a Cartesian axis, at least as thick as the slab and 1.5
  times the longest in-plane vector (:func:`check_periodic`); no stress;
* periodic on one axis (a wire): PME or P3M, the 1-D periodic sum; no stress;
* no periodic axis: the bare Coulomb sum over all pairs (O(N²), exact), or with
  ``pme``/``p3m`` the free-space mesh (O(N log N)); no stress.

Open directions are tuned with ``periodic`` (:mod:`torchpme.tuning._open`).
"""

from typing import Any, Dict, List, Optional

import torch

from .._core.validation import message
from .geometry import Evaluation, Geometry, strained_geometry
from .parameters import (
    Parameters,
    calculator_class,
    choose_parameters,
    default_cutoff,
    grid_bounds,
)

__all__ = [
    "METHODS",
    "UNITS",
    "Evaluation",
    "Geometry",
    "Parameters",
    "build_calculator",
    "check_periodic",
    "choose_parameters",
    "default_cutoff",
    "evaluate",
    "grid_bounds",
    "resolve_method",
    "strained_geometry",
    "unit_prefactor",
]

METHODS = ["auto", "ewald", "pme", "p3m"]

# name -> (prefactor attribute in torchpme.prefactors or None for 1, energy unit)
UNITS: Dict[str, Any] = {
    "eV_A": ("eV_A", "eV"),
    "gaussian": (None, "e²/Å"),
    "kcalmol_A": ("kcalmol_A", "kcal/mol"),
    "kJmol": ("kJmol", "kJ/mol"),
}

# without a cell to model the cost (see resolve_method), "auto" picks P3M above
# this many atoms: Ewald's work grows as N², the mesh methods' as N log N
AUTO_MESH_ABOVE = 2000
# "auto" puts clusters of more atoms than this on the free-space mesh (PME),
# past the crossover of a step with the O(N²) direct sum at the front door's
# default accuracy (tuned PME at its default cutoff; the measurement is in the
# README). PME, not P3M: P3M's at most 5 nodes need finer free-space meshes.
AUTO_CLUSTER_MESH_ABOVE = 3000


def unit_prefactor(units: str) -> float:
    """Coulomb prefactor ``1/(4πε₀)`` for charges in e and lengths in Å."""
    if units not in UNITS:
        raise ValueError(message("units", f"one of {list(UNITS)}", f"'{units}'"))
    name = UNITS[units][0]
    if name is None:
        return 1.0
    from .. import prefactors

    return float(getattr(prefactors, name))


def check_periodic(
    periodic: List[bool],
    cell: torch.Tensor,
    positions: Optional[torch.Tensor] = None,
    method: str = "auto",
    params: Optional[Dict[str, Any]] = None,
) -> None:
    """Reject boundary conditions and geometries the engine cannot treat, with
    one-line errors, before any work.

    Without ``positions`` only the boundary conditions and the cell are checked.
    With them (lengths in Å) also: a cell denser than matter
    (:func:`torchpme._core.geometry.check_density`), a slab for Ewald without
    enough vacuum (:func:`torchpme._core.geometry.check_slab`), the memory of
    the direct O(N²) sum of an open system, and coincident atoms (images
    included). ``method`` and ``params`` are the user's choices: wires and
    slabs go to PME/P3M (exact, no vacuum) unless they ask for Ewald
    (:func:`resolve_method`), large clusters to the mesh.
    """
    from .._core import geometry, workload
    from .._core.open_mesh import check_periodic_rows
    from ..neighbors import neighbor_pairs

    count = sum(periodic)
    n_atoms = 0 if positions is None else positions.shape[0]
    on_mesh = count < 3 and _open_method(method, periodic, params, n_atoms) in (
        "pme",
        "p3m",
    )
    # the bulk and Ewald's slabs use the whole cell; the meshes of wires and
    # slabs use their periodic rows only
    whole_cell = count == 3 or (count == 2 and not on_mesh)
    if whole_cell:
        _check_periodic_cell(periodic, cell)
    elif count > 0:
        check_periodic_rows(cell.detach(), [d for d in range(3) if not periodic[d]])
    if positions is None:
        return
    if whole_cell:
        geometry.check_density(cell, n_atoms, periodic)
        geometry.check_slab(positions, cell, periodic)
        return
    if count == 0 and not on_mesh:
        pairs = 0.5 * n_atoms * (n_atoms - 1)
        needed = pairs * workload.LIMITS["bytes_per_pair"]
        if needed > workload.memory_limit():
            raise ValueError(
                message(
                    "positions",
                    "few enough atoms for the direct sum over all pairs of an open "
                    "system within the memory budget of "
                    f"{workload.memory_limit():.3g} bytes (give a periodic cell, or "
                    "method 'p3m' for the mesh)",
                    f"{n_atoms} atoms: {pairs:.3g} pairs, {needed:.3g} bytes",
                )
            )
    # periodic systems meet the same check in their neighbour list; the direct
    # sum has none: a search within twice the coincidence distance finds only
    # the culprits
    threshold = workload.LIMITS["coincident_distance"]
    if threshold > 0 and n_atoms > 1:
        search = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
        if count > 0:
            search = cell.detach().to(search)
        neighbor_pairs(positions.detach(), search, 2.0 * threshold, periodic)


def _check_periodic_cell(periodic: List[bool], cell: torch.Tensor) -> None:
    """Three independent lattice vectors; a slab's free one along its axis."""
    count = sum(periodic)
    lengths = torch.linalg.norm(cell.detach(), dim=1)
    volume = float(torch.abs(torch.linalg.det(cell.detach().to(torch.float64))))
    if volume <= 1e-8 * float(lengths.prod()) or not volume > 0.0:
        raise ValueError(
            message(
                "cell",
                "three non-zero, independent lattice vectors for a periodic method "
                "(a slab needs a vacuum vector too)",
                f"cell {cell.detach().tolist()} (volume {volume:.3g})",
            )
        )
    if count == 2:
        free = periodic.index(False)
        row = cell.detach()[free]
        others = [abs(float(row[d])) for d in range(3) if d != free]
        if max(others) > 1e-8 * float(torch.linalg.norm(row)):
            raise ValueError(
                message(
                    "cell",
                    f"the free (non-periodic) lattice vector {free} along Cartesian "
                    f"axis {free} for the slab correction",
                    f"{row.tolist()}",
                )
            )


def resolve_method(
    method: str,
    n_atoms: int,
    periodic: List[bool],
    params: Optional[Dict[str, Any]] = None,
    cell: Optional[torch.Tensor] = None,
    cutoff: Optional[float] = None,
    accuracy: Optional[float] = None,
) -> str:
    """The concrete method for a user's choice.

    For ``"auto"``: ``direct`` for clusters up to ``AUTO_CLUSTER_MESH_ABOVE``
    atoms, PME on the free-space mesh for larger clusters, P3M (exact, on a mesh
    doubled along the open directions) for wires and slabs; on a 3-D periodic structure:
    Ewald when fixed ``params`` hold ``lr_wavelength``, P3M when they hold mesh
    parameters, else the cheaper of Ewald and P3M by the cost model of
    :mod:`torchpme._cli.cost` for this cell, ``cutoff`` (default
    :func:`default_cutoff`) and ``accuracy`` (tuner units, default 1e-5); without
    a ``cell``, P3M above ``AUTO_MESH_ABOVE`` atoms.
    """
    if method not in METHODS:
        raise ValueError(message("method", f"one of {METHODS}", f"'{method}'"))
    if sum(periodic) < 3:
        return _open_method(method, periodic, params, n_atoms)
    if method != "auto":
        return method
    given = params or {}
    if "lr_wavelength" in given:
        return "ewald"
    if "mesh_spacing" in given or "interpolation_nodes" in given:
        return "p3m"
    if cell is None:
        return "ewald" if n_atoms <= AUTO_MESH_ABOVE else "p3m"
    from .cost import ewald_cost, p3m_cost

    detached = cell.detach().to(torch.float64).cpu()
    volume = float(torch.abs(torch.linalg.det(detached)))
    lengths = torch.linalg.norm(detached, dim=1).tolist()
    rc = default_cutoff(detached, n_atoms) if cutoff is None else float(cutoff)
    target = 1e-5 if accuracy is None else float(accuracy)
    ewald = ewald_cost(n_atoms, volume, rc, target)
    return "ewald" if ewald <= p3m_cost(n_atoms, lengths, rc, target) else "p3m"


def _open_method(
    method: str,
    periodic: List[bool],
    params: Optional[Dict[str, Any]],
    n_atoms: int,
) -> str:
    """The method for a structure with open directions: the user's, else for a
    cluster the direct sum up to ``AUTO_CLUSTER_MESH_ABOVE`` atoms and PME
    above, Ewald for a slab with a fixed ``lr_wavelength`` (the Yeh–Berkowitz
    correction) and P3M (exact, no vacuum) otherwise."""
    count = sum(periodic)
    wants_ewald = method == "ewald" or (
        method == "auto" and "lr_wavelength" in (params or {})
    )
    if count < 2 and wants_ewald:
        raise ValueError(
            message(
                "method",
                "'auto', 'pme' or 'p3m' for a structure periodic on fewer than two "
                "axes (Ewald sums periodic images)",
                f"'{method}' with pbc {periodic}",
            )
        )
    if method != "auto":
        return method
    if count == 0:
        return "direct" if n_atoms <= AUTO_CLUSTER_MESH_ABOVE else "pme"
    return "ewald" if wants_ewald else "p3m"


def build_calculator(
    parameters: Parameters,
    prefactor: float,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> torch.nn.Module:
    """The calculator for ``parameters``, with a Coulomb potential of ``prefactor``."""
    from ..calculators import Calculator
    from ..potentials import CoulombPotential

    if parameters.method == "direct":
        calculator = Calculator(CoulombPotential(prefactor=prefactor))
    else:
        potential = CoulombPotential(smearing=parameters.smearing, prefactor=prefactor)
        calculator = calculator_class(parameters.method)(potential, **parameters.params)
    return calculator.to(dtype=dtype, device=device)


def evaluate(
    calculator: torch.nn.Module,
    parameters: Parameters,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    periodic: List[bool],
    stress: bool = True,
) -> Evaluation:
    """Energy ``E = Σ_i q_i V_i``, forces, stress and per-atom potentials.

    The neighbour list is rebuilt from the positions (all pairs for the direct
    method) and its distances are recomputed in torch, so that gradients reach
    the positions and, through the strain ``ε``, the cell:

    .. math::

        F_i = -\\frac{∂E}{∂r_i}, \\qquad
        σ = \\frac{1}{V} \\frac{∂E(r(1+ε), A(1+ε))}{∂ε}\\Big|_{ε=0}.

    Args:
        calculator: from :func:`build_calculator`.
        parameters: the :class:`Parameters` it was built with (for the cutoff).
        charges: ``(N, 1)``; cell ``(3, 3)``; positions ``(N, 3)``, all of one
            dtype and device.
        periodic: 3 bools.
        stress: compute the stress (3-D periodic systems only).

    Returns:
        :class:`Evaluation` (stress ``None`` when not computed).
    """
    geometry = strained_geometry(parameters, cell, positions, periodic, stress)
    charges = charges.detach().requires_grad_(True)
    g = geometry
    energy = calculator.energy(
        charges, g.cell, g.positions, g.indices, g.distances, g.periodic
    )
    # E = qᵀ B q with B symmetric, so ∂E/∂q = 2 V: the potentials come with the
    # forces from the energy's backward pass (which reuses its forward pass)
    gradients = torch.autograd.grad(energy, [charges, *g.leaves()])
    potentials = 0.5 * gradients[0]
    energies = (charges.detach() * potentials).sum(dim=1)
    return g.evaluation(energy, gradients[1:], potentials[:, 0], energies)
