"""Geometries refused before any work: coincident atoms, matter denser than matter
can be, slabs without enough vacuum.

The limits are entries of :data:`torchpme._core.workload.LIMITS`, the one table
of the front door's defaults.
"""

from typing import List, Optional

import torch

from .validation import message
from .workload import LIMITS

__all__ = ["check_coincident", "check_density", "check_slab"]


def check_coincident(
    indices: torch.Tensor,
    distances: torch.Tensor,
    shifts: Optional[torch.Tensor] = None,
    argument: str = "positions",
) -> None:
    """Refuse a neighbour list holding two atoms closer than
    ``LIMITS["coincident_distance"]`` (one minimum over the distances; padding
    pairs masked out with ``inf`` are ignored).

    Coincident atoms (on one site, or on a periodic image of each other) make the
    Coulomb energy of their pair ``q²/r`` unbounded: the sum reports a huge finite
    number. ``1e-4`` length units lies far below any interatomic distance in Å,
    bohr or nm (the shortest bond, H₂, is 0.74 Å), and far above the rounding of
    a distance between an atom and an image on top of it (float32 coordinates of
    a few hundred units round to about 1e-5).

    Args:
        indices: ``(P, 2)`` pairs; distances: ``(P,)``; shifts: ``(P, 3)`` image
            shifts, named in the message when given.
        argument: the argument the error names (``positions`` for a search,
            ``neighbor_distances`` for a list given to a calculator).
    """
    threshold = LIMITS["coincident_distance"]
    if distances.numel() == 0 or threshold <= 0:
        return
    closest = int(torch.argmin(distances.detach()))
    distance = float(distances.detach()[closest])
    if distance < threshold:
        i, j = (int(k) for k in indices[closest].tolist())
        image = ""
        if shifts is not None:
            image = f" (image shift {[int(s) for s in shifts[closest].tolist()]})"
        raise ValueError(
            message(
                argument,
                f"atoms at least {threshold:g} apart (coincident atoms make the "
                "Coulomb energy unbounded)",
                f"atoms {i} and {j}{image} at distance {distance:.3g} (pair {closest})",
            )
        )


def check_density(cell: torch.Tensor, n_atoms: int, periodic: List[bool]) -> None:
    """Front door (lengths in Å): refuse a periodic cell denser than matter.

    Refused: a volume per atom below ``LIMITS["min_volume_per_atom"]``, or a
    lattice vector (a short combination of the periodic rows) shorter than
    ``LIMITS["min_lattice_vector"]``, which puts every atom next to its own
    image. Such a cell, e.g. a crystal given in nm or with a mistyped lattice
    constant, would otherwise send the neighbour search after billions of
    images. Open boundaries (no periodic axis) are not checked.

    Args:
        cell: ``(3, 3)`` rows are lattice vectors; n_atoms: ``N``; periodic: 3 bools.
    """
    if not any(periodic):
        return
    rows = cell.detach().to(torch.float64).cpu()
    volume = abs(float(torch.linalg.det(rows)))
    per_atom = volume / max(n_atoms, 1)
    if per_atom < LIMITS["min_volume_per_atom"]:
        raise ValueError(
            message(
                "cell",
                f"a cell of at least {LIMITS['min_volume_per_atom']:g} Å³ per atom "
                "(denser "
                "than any matter otherwise: is the cell in Å?)",
                f"a volume of {volume:.3g} Å³ for {n_atoms} atoms "
                f"({per_atom:.3g} Å³ per atom)",
            )
        )
    lattice = torch.stack([rows[d] for d in range(3) if periodic[d]])
    steps = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    grid = torch.cartesian_prod(*([steps] * lattice.shape[0])).reshape(
        -1, lattice.shape[0]
    )
    lengths = torch.linalg.norm(grid @ lattice, dim=1)
    shortest = float(lengths[grid.abs().sum(dim=1) > 0].min())
    if shortest < LIMITS["min_lattice_vector"]:
        raise ValueError(
            message(
                "cell",
                "a cell without lattice vectors shorter than "
                f"{LIMITS['min_lattice_vector']:g} Å "
                "(closer images of one atom than any bond otherwise: is the cell "
                "in Å?)",
                f"a lattice vector of length {shortest:.3g} Å",
            )
        )


def check_slab(
    positions: torch.Tensor, cell: torch.Tensor, periodic: List[bool]
) -> None:
    """Refuse a slab (exactly two periodic axes) without enough vacuum.

    The slab correction of Yeh & Berkowitz treats the cell as periodic along its
    free axis ``f`` too and removes the coupling of the slab's images through
    their dipole. What it leaves decays with the gap ``g = L_f − t`` between the
    slab (thickness ``t``, the spread of the Cartesian coordinate ``f`` of the
    positions, as the correction uses it) and its image (``L_f`` the length of
    lattice vector ``f``). Needed: ``g ≥ LIMITS["slab_gap_per_thickness"]·t`` and
    ``g ≥ LIMITS["slab_gap_per_in_plane_length"]·L`` with ``L`` the longest
    periodic lattice vector. Other boundary conditions are not checked.

    Reference: Yeh & Berkowitz, J. Chem. Phys. 111, 3155 (1999),
    doi:10.1063/1.479595.
    """
    if sum(bool(p) for p in periodic) != 2 or positions.shape[0] == 0:
        return
    free = [bool(p) for p in periodic].index(False)
    rows = cell.detach().to(torch.float64).cpu()
    heights = positions.detach()[:, free].to(torch.float64)
    thickness = float(heights.max() - heights.min())
    length = float(torch.linalg.norm(rows[free]))
    in_plane = max(float(torch.linalg.norm(rows[d])) for d in range(3) if d != free)
    gap = length - thickness
    needed = max(
        LIMITS["slab_gap_per_thickness"] * thickness,
        LIMITS["slab_gap_per_in_plane_length"] * in_plane,
    )
    if gap < needed:
        raise ValueError(
            message(
                "cell",
                f"a cell with a vacuum gap along the free axis {free} at least as "
                "thick as the "
                f"slab and {LIMITS['slab_gap_per_in_plane_length']:g} times the "
                f"longest in-plane lattice vector ({in_plane:.4g}) for the slab "
                f"correction: a gap of {needed:.4g}, a cell length of at least "
                f"{thickness + needed:.4g} along axis {free}",
                f"a slab {thickness:.4g} thick in a cell {length:.4g} long along "
                f"axis {free} (gap {gap:.4g})",
            )
        )
