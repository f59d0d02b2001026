"""Work and memory estimated before the work (geometries refused before it are in
:mod:`torchpme._core.geometry`).

Each estimate is a count times a cost per item, compared with a limit from the
table :data:`LIMITS` (the one place for these defaults; change an entry at run
time, e.g. ``LIMITS["memory_fraction"] = 0.8``):

* neighbour list (half list of ``N`` atoms, cutoff ``r_c``, cell volume ``V``):
  ``N(N−1)/2 · (4/3)π r_c³ / V`` pairs between distinct atoms (their mean count
  for atoms spread through the cell; at most ``N(N−1)/2`` times the periodic
  images one pair can have within ``r_c``), plus the images of each atom itself,
  ``N/2 · (Π_d (2⌊r_c/s_d⌋ + 1) − 1)`` with ``s_d`` the spacing of the lattice
  planes; a free axis counts with the extent of the positions along it (at
  least ``r_c``) instead of a cell length;
* the pure-torch brute force: ``N²`` candidate pairs held at once, each looked
  at once per periodic image;
* a mesh: ``n₀ n₁ n₂`` points; Ewald: ``n₀ n₁ n₂`` k-vectors generated, and
  ``n₀ n₁ n₂ · N`` phases summed.

The memory budget is ``LIMITS["memory_fraction"]`` of the machine's physical
memory, or ``LIMITS["memory_bytes"]`` when set, or the environment variable
``TORCHPME_MEMORY_LIMIT`` (bytes, or with a suffix ``K``, ``M``, ``G``, ``T``).
The library is unit-agnostic, so only the front-door checks of
:mod:`torchpme._core.geometry` speak of lengths of matter (their limits are in
this table too).
"""

import math
import os
from typing import Dict, List

import torch

from .validation import message

__all__ = [
    "LIMITS",
    "check_kvectors",
    "check_mesh",
    "check_neighbor_list",
    "estimate_pairs",
    "memory_limit",
]

LIMITS: Dict[str, float] = {
    # share of the physical memory one neighbour list, mesh or k-set may claim
    "memory_fraction": 0.5,
    # a fixed budget in bytes instead of the share (0: use the share)
    "memory_bytes": 0.0,
    # peak bytes per pair of a neighbour list: the search's own growing buffers,
    # int64 indices and shifts, distances (measured peak about 105)
    "bytes_per_pair": 128.0,
    # peak bytes per candidate pair (N² of them) of the torch brute force:
    # index grids, differences and their gathers (measured peak about 175)
    "bytes_per_candidate": 192.0,
    # candidate pairs times images the brute force may examine (each is a few
    # vector operations; vesin's cell list avoids them)
    "brute_force_candidates": 2e9,
    # peak bytes per mesh point of one float64 channel, forward and backward:
    # the mesh, its half-complex transform, the filter (measured about 20)
    "bytes_per_mesh_point": 24.0,
    # peak bytes per point of the Ewald k-grid while the k-set is generated:
    # integer triplets, masks, k-vectors (measured about 67)
    "bytes_per_kvector": 80.0,
    # k-vectors times atoms of one Ewald sum: each a cosine, a sine and two
    # multiply-adds, forward and backward; PME and P3M do the same work in
    # O(N log N)
    "kvector_atom_products": 1e11,
    # pairs closer than this (length units) are coincident atoms, see
    # geometry.check_coincident
    "coincident_distance": 1e-4,
    # front door (Å): the densest matter holds about 5 Å³ per atom (diamond
    # 5.7); a fifth of it leaves room for matter compressed to terapascals
    "min_volume_per_atom": 1.0,
    # front door (Å): an atom and its own periodic image closer than the
    # shortest bond (H₂, 0.74 Å) are not matter
    "min_lattice_vector": 0.5,
    # a slab's vacuum gap along its free axis, at least this many slab
    # thicknesses (Yeh & Berkowitz's correction removes the dipole coupling of
    # the slab images only when they are well apart)
    "slab_gap_per_thickness": 1.0,
    # ... and at least this many in-plane lattice lengths L: the slab images
    # also interact through in-plane Fourier components k ≥ 2π/L, whose fields
    # decay as exp(−k·gap); 1.5 L leaves exp(−3π) ≈ 8e-5 of them
    "slab_gap_per_in_plane_length": 1.5,
}

_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _physical_memory() -> float:
    """The machine's physical memory in bytes (16 GiB where it cannot be read)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return float(16 << 30)


def memory_limit() -> float:
    """The memory budget in bytes (see the module docstring for how it is set)."""
    text = os.environ.get("TORCHPME_MEMORY_LIMIT", "").strip().upper().rstrip("B")
    if text:
        suffix = text[-1] if text[-1] in _SUFFIXES else ""
        try:
            return float(text[: len(text) - len(suffix)]) * _SUFFIXES[suffix]
        except ValueError:
            raise ValueError(
                message(
                    "TORCHPME_MEMORY_LIMIT",
                    "a number of bytes, optionally with K, M, G or T",
                    f"'{os.environ['TORCHPME_MEMORY_LIMIT']}'",
                )
            ) from None
    if LIMITS["memory_bytes"] > 0:
        return float(LIMITS["memory_bytes"])
    return LIMITS["memory_fraction"] * _physical_memory()


def _size(count: float) -> str:
    """Bytes as text: ``3.2 GB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.3g} bytes"


def _budget_text(limit: float) -> str:
    return (
        f"within the memory budget of {_size(limit)} (LIMITS in "
        "torchpme._core.workload, or the TORCHPME_MEMORY_LIMIT variable)"
    )


def _geometry(
    positions: torch.Tensor, cell: torch.Tensor, periodic: List[bool]
) -> List[float]:
    """``[volume, s_0, s_1, s_2]``: the volume the atoms spread over and the
    plane spacings of the periodic axes (``inf`` on free axes)."""
    rows = cell.detach().to(torch.float64).cpu()
    periodic_rows = [rows[d] for d in range(3) if periodic[d]]
    if periodic_rows:
        basis = torch.stack(periodic_rows)
        complement = list(torch.linalg.svd(basis, full_matrices=True)[2])
        free_directions = complement[len(periodic_rows) :]
    else:
        free_directions = list(torch.eye(3, dtype=torch.float64))
    # free axes: the extent of the atoms along a direction normal to the lattice
    points = positions.detach().to(torch.float64).cpu()
    search = rows.clone()
    fill = iter(free_directions)
    for d in range(3):
        if not periodic[d]:
            direction = next(fill)
            search[d] = direction
    volume = abs(float(torch.linalg.det(search)))
    spacings = [float("inf")] * 3
    for d in range(3):
        if periodic[d]:
            others = [search[e] for e in range(3) if e != d]
            spacings[d] = volume / float(torch.linalg.norm(torch.cross(*others, dim=0)))
    extents: List[float] = []
    for direction in free_directions:
        projected = points @ direction
        extents.append(float(projected.max() - projected.min()) if len(points) else 0)
    return [volume, *spacings, *extents]


def estimate_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: List[bool],
) -> float:
    """The expected number of pairs of a half neighbour list (see the module
    docstring).

    Args:
        positions: ``(N, 3)``; cell: ``(3, 3)``; cutoff: ``r_c``; periodic: 3 bools.

    Returns:
        the estimate, a float (it may exceed any integer the search could hold).
    """
    n_atoms = positions.shape[0]
    geometry = _geometry(positions, cell, periodic)
    volume = geometry[0]
    for extent in geometry[4:]:
        volume *= max(extent, cutoff)
    spacings = [s for s in geometry[1:4] if s != float("inf")]
    sphere = 4.0 / 3.0 * math.pi * cutoff**3
    distinct = 0.5 * n_atoms * (n_atoms - 1)
    per_pair_bound = math.prod(
        float(math.floor(2.0 * cutoff / s) + 1) for s in spacings
    )
    cross = min(distinct * sphere / volume, distinct * per_pair_bound)
    images = math.prod(float(2 * math.floor(cutoff / s) + 1) for s in spacings) - 1.0
    return cross + 0.5 * n_atoms * images


def check_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: List[bool],
    brute_force: bool,
) -> float:
    """Refuse a neighbour search whose estimated memory or work exceeds the limits.

    The argument named is ``cutoff`` when each atom would have more neighbours
    than the system has atoms (the cutoff spans many cells: a large cutoff or a
    small cell), else ``positions`` (many atoms for the volume).

    Returns:
        the estimated number of pairs.
    """
    n_atoms = positions.shape[0]
    pairs = estimate_pairs(positions, cell, cutoff, periodic)
    limit = memory_limit()
    needed = pairs * LIMITS["bytes_per_pair"]
    candidates = 0.0
    if brute_force:
        needed += float(n_atoms) ** 2 * LIMITS["bytes_per_candidate"]
        spacings = _geometry(positions, cell, periodic)[1:4]
        reach = [
            2 * math.ceil(cutoff / s) + 3 if s != float("inf") else 1 for s in spacings
        ]
        candidates = float(n_atoms) ** 2 * math.prod(float(r) for r in reach)
    argument = "cutoff" if 2.0 * pairs / max(n_atoms, 1) > n_atoms else "positions"
    enough = {"cutoff": "small enough for", "positions": "few enough atoms for"}
    want = enough[argument]
    received = (
        f"cutoff {cutoff:g} with {n_atoms} atoms (periodic {periodic}): about "
        f"{pairs:.3g} pairs, {_size(needed)}; reduce `cutoff`, or check `cell` and "
        "`positions`"
    )
    if not needed <= limit:
        expected = f"{want} a neighbour list {_budget_text(limit)}"
        raise ValueError(message(argument, expected, received))
    if candidates > LIMITS["brute_force_candidates"]:
        raise ValueError(
            message(
                argument,
                f"{want} a brute-force search of at most "
                f"{LIMITS['brute_force_candidates']:.3g} pair images (LIMITS in "
                "torchpme._core.workload); backend='vesin' (pip install vesin) "
                "searches in O(N)",
                f"cutoff {cutoff:g} with {n_atoms} atoms: {candidates:.3g} pair images",
            )
        )
    return pairs


def check_mesh(sizes: List[float], argument: str, value: str) -> None:
    """Refuse a mesh of ``sizes`` points per axis beyond the memory budget.

    Args:
        sizes: points per axis (floats, so that absurd sizes do not overflow).
        argument: the argument that set the size (``"mesh_spacing"``,
            ``"fixed_mesh"``); value: its value and context, as text.
    """
    points = math.prod(float(n) for n in sizes)
    if math.isnan(points):
        return  # a cell with NaN entries: its own check names it
    needed = points * LIMITS["bytes_per_mesh_point"]
    limit = memory_limit()
    if not needed <= limit:
        shape = "x".join(f"{n:.0f}" for n in sizes)
        raise ValueError(
            message(
                argument,
                f"{'large' if argument == 'mesh_spacing' else 'small'} enough for a "
                f"mesh {_budget_text(limit)}",
                f"{value}: a mesh of {shape} = {points:.3g} points, about "
                f"{_size(needed)}",
            )
        )


def check_kvectors(sizes: List[float], n_atoms: int, lr_wavelength: float) -> None:
    """Refuse an Ewald k-grid beyond the memory budget, or whose sum over
    ``n_atoms`` atoms exceeds ``LIMITS["kvector_atom_products"]``."""
    count = math.prod(float(n) for n in sizes)
    if math.isnan(count):
        return  # a cell with NaN entries: its own check names it
    needed = count * LIMITS["bytes_per_kvector"]
    limit = memory_limit()
    received = f"{lr_wavelength:g}: {count:.3g} k-vectors"
    if not needed <= limit:
        raise ValueError(
            message(
                "lr_wavelength",
                f"large enough for a k-vector set {_budget_text(limit)}",
                f"{received}, about {_size(needed)}",
            )
        )
    work = count * n_atoms
    if work > LIMITS["kvector_atom_products"]:
        raise ValueError(
            message(
                "lr_wavelength",
                "large enough for at most "
                f"{LIMITS['kvector_atom_products']:.3g} k-vectors times atoms "
                "(LIMITS in torchpme._core.workload; PME or P3M do this work in "
                "O(N log N))",
                f"{received} times {n_atoms} atoms = {work:.3g}",
            )
        )
