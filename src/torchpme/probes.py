"""Potential and field of a system's charges at probe points that are not atoms.

Grid points, MM sites seen by ML atoms (electrostatic embedding), or ML atoms seen by
an MM environment: the potential of the sources at a probe ``p`` is

.. math::

    φ(\\mathbf{r}_p) = \\sum_j q_j\\, v(\\mathbf{r}_p − \\mathbf{r}_j)

summed over the periodic images of the sources (and with the neutralising background
and the slab correction of the calculator, as for its atoms). A probe has no charge:
it is an atom of charge 0 for the calculator, so every method, boundary condition and
option of the calculators applies, the self term drops out (it is ``q_p`` times a
constant), and its potential is the one a test charge would feel. The real-space
part needs the pairs between probes and sources within the cutoff
(:func:`probe_neighbors`). On a mesh the probes' zero charges are spread with the
sources (one stencil each: a small cost next to ``N`` sources).

The field ``E = −∇_p φ`` is the gradient of each probe's potential with respect to
its own position only (probes do not act on each other), taken by autograd.

Gradients flow to the probe and source positions, the source charges and the cell.
"""

from typing import List, Optional, Tuple

import torch

from ._core.validation import check_like, check_shape, message, reads_cheaply
from .neighbors import compute_neighbors

__all__ = ["field_at", "potential_at", "probe_neighbors", "uniform_field_potential"]


def probe_neighbors(
    probes: torch.Tensor,
    positions: torch.Tensor,
    cell: Optional[torch.Tensor],
    cutoff: float,
    periodic=None,
    return_shifts: bool = False,
):
    """Pairs of probes and sources closer than ``cutoff``, periodic images included.

    Args:
        probes: ``(P, 3)`` probe positions.
        positions: ``(N, 3)`` source positions.
        cell: ``(3, 3)`` cell, or None for a cluster.
        cutoff: real-space cutoff of the calculator.
        periodic: as in :func:`torchpme.neighbors.compute_neighbors`.
        return_shifts: also return the ``(Q, 3)`` integer image shifts ``S`` of
            the sources (the pair vector is ``r_source − r_probe + S·cell``), the
            form :func:`field_at` takes.

    Returns:
        ``(indices, distances)``: ``(Q, 2)`` int64 rows ``(probe, source)`` and
        their ``(Q,)`` distances, the form :func:`potential_at` takes; and the
        shifts if ``return_shifts``.

    Example:
        >>> sources = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
        >>> probes = torch.tensor([[1.0, 0.0, 0.0]])
        >>> probe_neighbors(probes, sources, None, 2.5)[0].tolist()
        [[0, 0], [0, 1]]
    """
    _check_points(probes, positions)
    n_sources = positions.shape[0]
    both = torch.cat([positions, probes.to(positions.dtype)])
    indices, distances, shifts = compute_neighbors(
        both.detach(), cell, cutoff, periodic, full_list=True, return_shifts=True
    )
    # the rows whose first atom is a probe and second a source
    keep = (indices[:, 0] >= n_sources) & (indices[:, 1] < n_sources)
    rows = indices[keep]
    rows = torch.stack([rows[:, 0] - n_sources, rows[:, 1]], dim=1)
    if return_shifts:
        return rows, distances[keep], shifts[keep]
    return rows, distances[keep]


def potential_at(
    calculator: torch.nn.Module,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    probes: torch.Tensor,
    probe_indices: torch.Tensor,
    probe_distances: torch.Tensor,
    periodic: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The potential of the sources at the probes, by ``calculator``'s method.

    Args:
        calculator: any calculator of :mod:`torchpme.calculators` (direct, Ewald,
            PME, P3M; its potential, prefactor and options apply).
        charges: ``(N, C)`` source charges.
        cell: ``(3, 3)`` cell (zeros for a cluster with the direct sum or the
            free-space mesh).
        positions: ``(N, 3)`` source positions.
        probes: ``(P, 3)`` probe positions, in the dtype of ``positions``.
        probe_indices: ``(Q, 2)`` rows ``(probe, source)`` within the cutoff
            (:func:`probe_neighbors`); each pair once, whatever the calculator's
            ``full_neighbor_list``.
        probe_distances: ``(Q,)`` their distances (computed from ``probes`` to
            carry gradients to them).
        periodic: ``(3,)`` bools, as for the calculator.

    Returns:
        ``(P, C)`` potentials at the probes.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> sources = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
        >>> charges = torch.tensor([[1.0], [-1.0]])
        >>> probes = torch.tensor([[1.0, 0.0, 0.0]])
        >>> pairs, distances = probe_neighbors(probes, sources, None, 10.0)
        >>> potential_at(Calculator(CoulombPotential()), charges, torch.zeros(3, 3),
        ...              sources, probes, pairs, distances)
        tensor([[0.5000]])
    """
    _check_points(probes, positions)
    check_shape("probe_indices", probe_indices, [-1, 2], "(Q, 2)")
    n_sources = positions.shape[0]
    n_probes = probes.shape[0]
    if probe_indices.is_floating_point() or probe_indices.is_complex():
        raise TypeError(message("probe_indices", "integers", f"{probe_indices.dtype}"))
    # a read of the values: on the CPU, or on accelerators with value checks on
    if probe_indices.shape[0] > 0 and reads_cheaply(probe_indices):
        _check_rows(probe_indices, n_probes, n_sources)
    rows = torch.stack([probe_indices[:, 0] + n_sources, probe_indices[:, 1]], dim=1)
    zeros = torch.zeros(
        (n_probes, charges.shape[1]), dtype=charges.dtype, device=charges.device
    )
    result = calculator(
        charges=torch.cat([charges, zeros]),
        cell=cell,
        positions=torch.cat([positions, probes]),
        neighbor_indices=rows,
        neighbor_distances=probe_distances,
        periodic=periodic,
    )
    # the calculators return V_i with E = Σ q_i V_i, half the potential of the
    # other charges (torch-pme's convention); a probe's is the whole one
    return 2.0 * result[n_sources:]


def field_at(
    calculator: torch.nn.Module,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    probes: torch.Tensor,
    probe_indices: torch.Tensor,
    probe_shifts: Optional[torch.Tensor] = None,
    periodic: Optional[torch.Tensor] = None,
    create_graph: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The potential and the field ``E = −∇φ`` of the sources at the probes.

    The pair distances are taken here, ``‖r_source − r_probe + S·cell‖``, so that
    the field sees the real-space terms too.

    Args:
        calculator, charges, cell, positions, probes, probe_indices, periodic: as
            for :func:`potential_at`.
        probe_shifts: ``(Q, 3)`` integer image shifts of the pairs
            (:func:`probe_neighbors` with ``return_shifts=True``); None for none
            (a cluster).
        create_graph: keep the graph of the field (a field in a loss, or forces
            on the sources from an energy of the field).

    Returns:
        ``(potential (P, C), field (P, C, 3))``.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> sources = torch.tensor([[0.0, 0.0, 0.0]])
        >>> probes = torch.tensor([[2.0, 0.0, 0.0]])
        >>> pairs, _ = probe_neighbors(probes, sources, None, 10.0)
        >>> _, field = field_at(Calculator(CoulombPotential()), torch.ones(1, 1),
        ...                     torch.zeros(3, 3), sources, probes, pairs)
        >>> field[0, 0, 0]  # 1/r² along +x
        tensor(0.2500)
    """
    _check_points(probes, positions)
    with torch.enable_grad():
        points = probes if probes.requires_grad else probes.detach().requires_grad_()
        vectors = positions[probe_indices[:, 1]] - points[probe_indices[:, 0]]
        if probe_shifts is not None:
            check_shape(
                "probe_shifts", probe_shifts, [probe_indices.shape[0], 3], "(Q, 3)"
            )
            vectors = vectors + probe_shifts.to(cell.dtype) @ cell
        distances = torch.linalg.norm(vectors, dim=1)
        potential = potential_at(
            calculator, charges, cell, positions, points, probe_indices, distances,
            periodic,
        )  # fmt: skip
        columns: List[torch.Tensor] = []
        for channel in range(potential.shape[1]):
            (gradient,) = torch.autograd.grad(
                potential[:, channel].sum(),
                points,
                create_graph=create_graph,
                retain_graph=True,
            )
            columns.append(-gradient)
    return potential, torch.stack(columns, dim=1)


def uniform_field_potential(
    positions: torch.Tensor,
    field: torch.Tensor,
    cell: Optional[torch.Tensor] = None,
    periodic: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The potential ``φ_i = −E·r_i`` of a uniform external field at the atoms.

    Add it to a calculator's potentials (the energy is then ``Σ q_i (V_i + φ_i)``:
    an external potential has no ½); the force is ``q_i E``. In a cluster this is
    exact. Along periodic directions a uniform field's potential is not periodic:
    the atoms are wrapped into the cell first (the sawtooth form), so the energy
    jumps by ``q E·a`` when an atom crosses the cell along a lattice vector ``a``
    and a net polarisation is only defined modulo such jumps (the Berry-phase
    form of the modern theory of polarisation is not implemented).

    Args:
        positions: ``(N, 3)``.
        field: ``(3,)`` field ``E`` (potential per length).
        cell: ``(3, 3)`` cell, or None for a cluster.
        periodic: ``(3,)`` bools (default: all periodic with a cell).

    Returns:
        ``(N, 1)`` potentials.

    Example:
        >>> r = torch.tensor([[1.0, 2.0, 0.0]])
        >>> uniform_field_potential(r, torch.tensor([0.5, 0.0, 0.0]))
        tensor([[-0.5000]])
    """
    check_shape("field", field, [3], "(3,)")
    check_like("field", field, positions, "positions")
    check_shape("positions", positions, [-1, 3], "(N, 3)")
    where = positions
    if cell is not None and bool(cell.detach().abs().sum() > 0):
        check_shape("cell", cell, [3, 3], "(3, 3)")
        fractional = positions @ torch.linalg.inv(cell)
        wrap = torch.floor(fractional.detach())
        if periodic is not None:
            wrap = wrap * periodic.to(wrap.dtype)
        where = positions - wrap @ cell
    return -(where @ field).unsqueeze(1)


def _check_points(probes: torch.Tensor, positions: torch.Tensor) -> None:
    if not isinstance(probes, torch.Tensor):
        raise TypeError(message("probes", "a torch.Tensor", type(probes).__name__))
    check_shape("probes", probes, [-1, 3], "(P, 3)")
    check_like("probes", probes, positions, "positions")


def _check_rows(rows: torch.Tensor, n_probes: int, n_sources: int) -> None:
    low = [int(v) for v in rows.min(dim=0).values.tolist()]
    high = [int(v) for v in rows.max(dim=0).values.tolist()]
    if min(low) < 0 or high[0] >= n_probes or high[1] >= n_sources:
        raise ValueError(
            message(
                "probe_indices",
                f"rows (probe in [0, {n_probes}), source in [0, {n_sources}))",
                f"probes {low[0]} … {high[0]}, sources {low[1]} … {high[1]}",
            )
        )
