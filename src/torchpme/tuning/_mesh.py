"""What the tuning of PME and P3M shares: node checks, the mean mesh spacing of
the compatible bounds, the estimate front end and the grid of candidates."""

import math
from functools import partial
from itertools import product
from typing import Any, Callable, Dict, List, Tuple

import torch

from .._core.kspace import mesh_size
from .._core.validation import check_positive, message
from . import _estimates
from .tuner import TuningGrid

# cost of one atom-node of spreading/gathering (with their gradients) relative to
# one mesh point of one FFT pass, measured on CPU within a factor of about 3
_SPREAD_OVER_FFT = 10.0


def check_nodes(interpolation_nodes, low: int, high: int) -> int:
    """``interpolation_nodes`` as an int, which must be in ``low … high``."""
    nodes = int(interpolation_nodes)
    if nodes != interpolation_nodes or not low <= nodes <= high:
        raise ValueError(
            message(
                "interpolation_nodes",
                f"an integer in {low} … {high}",
                f"{interpolation_nodes}",
            )
        )
    return nodes


def mean_spacing(
    cell_dimensions: torch.Tensor, mesh_spacing: torch.Tensor
) -> torch.Tensor:
    """torch-pme 0.5's mean spacing ``H = (H_0 H_1 H_2)^{1/3}``,
    ``H_d = L_d/(2L_d/h + 1)``, of its PME and P3M bounds."""
    spacings = cell_dimensions / (2.0 * cell_dimensions / mesh_spacing + 1)
    return torch.prod(spacings) ** (1.0 / 3.0)


class MeshErrorEstimate(_estimates.ErrorEstimate):
    """Base of the PME and P3M estimates: the mesh of ``mesh_spacing`` and the
    node count are the key of :func:`~torchpme.tuning._estimates.mesh_errors`.

    Subclasses set ``_weights`` (its ``method``) and ``_node_range`` (the node
    counts the estimate accepts, which are also the ones the tuner may try).
    """

    _weights: str
    _node_range: Tuple[int, int]

    def _kspace_terms(self, smearing: float, key: tuple) -> _estimates.Terms:
        ns, nodes = list(key[:3]), key[3]
        return _estimates.mesh_errors(
            self._cell_array, smearing, ns, self._weights, nodes
        )

    def _mesh_error(
        self, smearing: float, cutoff: float, mesh_spacing: float, interpolation_nodes
    ) -> torch.Tensor:
        nodes = check_nodes(interpolation_nodes, *self._node_range)
        check_positive("mesh_spacing", float(mesh_spacing))
        ns = mesh_size(self._lengths, float(mesh_spacing))
        return self._total(smearing, cutoff, (*ns, nodes))


def _mesh_candidates(
    lengths: List[float],
    n_atoms: int,
    nodes_lo: int,
    nodes_hi: int,
    mesh_lo: int,
    mesh_hi: int,
) -> Tuple[List[Dict[str, Any]], Callable, Callable]:
    """``{"interpolation_nodes": n, "mesh_spacing": 2 L_min/(2^e − 1)}``, nodes
    outer, exponents inner (the spacing gives ``2^e`` points along the shortest
    vector); their resources (interpolation nodes, mesh points) and a rough cost
    model ``10·N·n³ + M·log₂M``."""
    min_dimension = min(lengths)
    params = [
        {"interpolation_nodes": n, "mesh_spacing": 2 * min_dimension / (2**e - 1)}
        for n, e in product(range(nodes_lo, nodes_hi + 1), range(mesh_lo, mesh_hi + 1))
    ]

    def cost(param: Dict[str, Any]) -> Tuple[float, ...]:
        points = math.prod(mesh_size(lengths, param["mesh_spacing"]))
        return (param["interpolation_nodes"], points)

    def work(param: Dict[str, Any]) -> float:
        points = math.prod(mesh_size(lengths, param["mesh_spacing"]))
        nodes = param["interpolation_nodes"]
        return _SPREAD_OVER_FFT * n_atoms * nodes**3 + points * math.log2(points)

    return params, cost, work


def mesh_grid(
    calculator: type,
    estimate: type,
    nodes_lo: int,
    nodes_hi: int,
    mesh_lo: int,
    mesh_hi: int,
) -> TuningGrid:
    """The grid of ``tune_pme`` and ``tune_p3m``: node counts within the range of
    the ``estimate`` (a :class:`MeshErrorEstimate`), mesh exponents in 1 … 10."""
    smallest, largest = estimate._node_range
    return TuningGrid(
        calculator=calculator,
        estimate=estimate,
        ranges=[
            ("nodes_lo", nodes_lo, "nodes_hi", nodes_hi, smallest, largest),
            ("mesh_lo", mesh_lo, "mesh_hi", mesh_hi, 1, 10),
        ],
        candidates=partial(
            _mesh_candidates,
            nodes_lo=nodes_lo,
            nodes_hi=nodes_hi,
            mesh_lo=mesh_lo,
            mesh_hi=mesh_hi,
        ),
        hint="Increase `mesh_hi` (finer meshes), `nodes_hi` or the cutoff.",
    )
