"""The one tuner of both mesh methods (PME and P3M), parametrised by the error
estimate of the calculator it tunes.

A :class:`MeshErrorEstimate` subclass names the calculator, its interpolation
weights and the node counts it covers; :func:`mesh_grid` turns it and the grid
bounds into the :class:`~torchpme.tuning._search.TuningGrid` that
:func:`~torchpme.tuning._search.grid_search` searches: power-of-two meshes as
the calculators derive them from ``mesh_spacing``, or 5-smooth ``fixed_mesh``
sizes.
"""

import math
from functools import partial
from itertools import product
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .._core.kspace import mesh_size
from .._core.validation import check_fixed_mesh, check_positive
from ._estimates import ErrorEstimate
from ._kspace_errors import Terms, mesh_errors
from ._search import TuningGrid
from ._validation import check_flag, check_nodes

# cost of one atom-node of spreading/gathering (with their gradients) relative to
# one mesh point of one FFT pass: a rough ratio (on CPUs within a factor of about
# 3), as the model only picks the few candidates that are timed
_SPREAD_OVER_FFT = 10.0


def is_smooth(n: int) -> bool:
    """Whether ``n ≥ 1`` has no prime factor above 5 (an FFT-friendly size)."""
    for prime in (2, 3, 5):
        while n % prime == 0:
            n //= prime
    return n == 1


def smooth_sizes(low: int, high: int) -> List[int]:
    """The 5-smooth integers ``2^a 3^b 5^c`` in ``low … high``, ascending."""
    return [n for n in range(max(low, 1), high + 1) if is_smooth(n)]


def smooth_mesh_size(lengths: List[float], mesh_spacing: float) -> List[int]:
    """Mesh points per lattice vector: the smallest 5-smooth integer ≥ ``2L/h + 1``.

    The rule of :func:`torchpme._core.kspace.mesh_size` with powers of two replaced
    by 5-smooth sizes, at most 25 % above any target of 8 or more (powers of two:
    up to 100 % per axis, 8× in mesh points).
    """
    sizes: List[int] = []
    for length in lengths:
        # a target that is an integer up to rounding must not step past it
        n = max(math.ceil(2.0 * (length / mesh_spacing) + 1.0 - 1e-9), 1)
        while not is_smooth(n):
            n += 1
        sizes.append(n)
    return sizes


class MeshErrorEstimate(ErrorEstimate):
    """Base of the PME and P3M estimates: the mesh of ``mesh_spacing`` (or
    ``fixed_mesh``) and the node count are the key of
    :func:`~torchpme.tuning._kspace_errors.mesh_errors`.

    Subclasses set the class attributes ``calculator`` (the calculator rated and
    timed), ``weights`` (the ``method`` of ``mesh_errors``: ``"Lagrange"`` or
    ``"P3M"``) and ``node_range`` (the node counts the estimate covers, which are
    also the ones the tuner may try), and define ``error`` with the positional
    order of their compatible error-bound class.
    """

    calculator: type
    weights: str
    node_range: Tuple[int, int]

    def _kspace_terms(self, smearing: float, key: tuple) -> Terms:
        ns, nodes = list(key[:3]), key[3]
        return mesh_errors(self._cell_array, smearing, ns, self.weights, nodes)

    def kspace_key(
        self,
        mesh_spacing: float,
        interpolation_nodes,
        fixed_mesh: Optional[List[int]] = None,
    ) -> tuple:
        """``(n_0, n_1, n_2, nodes)``: the mesh of the calculator built with these
        arguments (``fixed_mesh`` if given, else the size derived from
        ``mesh_spacing``) and its node count, checked."""
        nodes = check_nodes(interpolation_nodes, *self.node_range)
        check_positive("mesh_spacing", float(mesh_spacing))
        if fixed_mesh is None:
            ns = mesh_size(self._lengths, float(mesh_spacing))
        else:
            ns = check_fixed_mesh(fixed_mesh)
        return (*ns, nodes)

    def _mesh_error(
        self,
        smearing: float,
        cutoff: float,
        mesh_spacing: float,
        interpolation_nodes,
        fixed_mesh: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """The error (times ``safety``) of the calculator built with these
        arguments (see :meth:`kspace_key`)."""
        key = self.kspace_key(mesh_spacing, interpolation_nodes, fixed_mesh)
        return self._total(smearing, cutoff, key)


def _mesh_points(lengths: List[float], param: Dict[str, Any]) -> int:
    """Mesh points of the calculator built with the candidate ``param``."""
    if "fixed_mesh" in param:
        return math.prod(param["fixed_mesh"])
    return math.prod(mesh_size(lengths, param["mesh_spacing"]))


def _affordable(lengths: List[float], param: Dict[str, Any]) -> bool:
    """Whether the candidate's mesh fits the memory budget (the calculator would
    refuse it: :func:`torchpme._core.workload.check_mesh`), so that a fine end of
    the grid on a large cell is skipped instead of failing the search."""
    try:
        _mesh_points(lengths, param)
    except ValueError:
        return False
    return True


def _mesh_candidates(
    lengths: List[float],
    n_atoms: int,
    nodes_lo: int,
    nodes_hi: int,
    mesh_lo: int,
    mesh_hi: int,
    smooth: bool = False,
) -> Tuple[List[Dict[str, Any]], Callable, Callable]:
    """``{"interpolation_nodes": n, "mesh_spacing": 2 L_min/(s − 1)}``, nodes
    outer, sizes inner, with ``s = 2^e`` (``e = mesh_lo … mesh_hi``): the spacing
    gives ``s`` points along the shortest vector; their resources (interpolation
    nodes, mesh points) and a rough cost model ``10·N·n³ + M·log₂M``.

    With ``smooth``, ``s`` runs over the 5-smooth sizes in ``2^mesh_lo …
    2^mesh_hi`` and each candidate also has ``"fixed_mesh"``: the sizes of
    :func:`smooth_mesh_size` for its spacing (``s`` along the shortest vector).
    Candidates whose mesh is over the memory budget are left out.
    """
    min_dimension = min(lengths)
    if smooth:
        sizes = smooth_sizes(2**mesh_lo, 2**mesh_hi)
    else:
        sizes = [2**e for e in range(mesh_lo, mesh_hi + 1)]
    params = []
    for n, size in product(range(nodes_lo, nodes_hi + 1), sizes):
        spacing = 2 * min_dimension / (size - 1)
        param: Dict[str, Any] = {"interpolation_nodes": n, "mesh_spacing": spacing}
        if smooth:
            param["fixed_mesh"] = smooth_mesh_size(lengths, spacing)
        if _affordable(lengths, param):
            params.append(param)

    def cost(param: Dict[str, Any]) -> Tuple[float, ...]:
        return (param["interpolation_nodes"], _mesh_points(lengths, param))

    def work(param: Dict[str, Any]) -> float:
        points = _mesh_points(lengths, param)
        nodes = param["interpolation_nodes"]
        return _SPREAD_OVER_FFT * n_atoms * nodes**3 + points * math.log2(points)

    return params, cost, work


def mesh_grid(
    estimate: type,
    nodes_lo: int,
    nodes_hi: int,
    mesh_lo: int,
    mesh_hi: int,
    smooth_meshes: bool = False,
) -> TuningGrid:
    """The grid of ``tune_pme`` and ``tune_p3m``: the calculator of ``estimate`` (a
    :class:`MeshErrorEstimate` subclass), node counts within its ``node_range``,
    mesh exponents in 1 … 10; with ``smooth_meshes``, the 5-smooth sizes between
    those powers of two as ``fixed_mesh`` (see :func:`_mesh_candidates`)."""
    check_flag("smooth_meshes", smooth_meshes)
    smallest, largest = estimate.node_range
    return TuningGrid(
        calculator=estimate.calculator,
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
            smooth=smooth_meshes,
        ),
        hint="Increase `mesh_hi` (finer meshes), `nodes_hi` or the cutoff.",
    )
