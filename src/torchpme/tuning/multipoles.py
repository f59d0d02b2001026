"""Error estimates and tuning of the mesh methods for point charges and dipoles
(:class:`~torchpme.multipoles.MultipoleCalculator`).

The RMS force error of random, uncorrelated charges ``q`` and dipoles ``μ`` is
split as ``ΔF² = ΔF_real² + ΔF_k²`` (the two parts are uncorrelated).

**Real space** (the pairs beyond the cutoff ``r_c``): with ``m = ⟨|μ|²⟩/3`` and
the radial functions ``B_l`` of :mod:`torchpme._core.multipole_pairs`,
averaging the squared pair force over independent random orientations gives

.. math::

    ΔF_{real}^2 = \\frac{N}{V} \\int_{r_c}^∞ 4π r^2 \\big[
        ⟨q^2⟩^2 r^2 B_1^2
        + 2 ⟨q^2⟩ m (3B_1^2 − 2r^2 B_1 B_2 + r^4 B_2^2)
        + m^2 r^2 (15 B_2^2 − 6 r^2 B_2 B_3 + r^4 B_3^2) \\big] dr,

evaluated by quadrature (the dipolar terms are those of Wang & Holm's
estimate, J. Chem. Phys. 115, 6351 (2001), doi:10.1063/1.1398588, in closed
angular averages).

**Mesh** (the difference between the mesh and the exact reciprocal sum): the
error is intensive in the density, so it is measured on a *proxy*: the cell
scaled down to a few smearings per lattice vector with the same mesh spacing,
holding :data:`PROXY_ATOMS` atoms at random positions with moments drawn from
the system's. The mean-square force error against the exact reciprocal sum
(an Ewald sum to ``exp(−σ²k²/2) < e^{−30}``) splits into the atoms' own
(self) error ``S``, measured on :data:`OWN_SAMPLES` of them each alone (in a cell of
:data:`OWN_SMEARINGS` smearings), and the pair error, which
scales with the density: ``ΔF_k² = (N − 1)/V · (T − S) V_p/(M − 1) + S``.
Dipole forces grow as ``k³`` in the reciprocal sum, so dipoles need finer
meshes than charges at the same smearing (Cerdà et al., J. Chem. Phys. 129,
234104 (2008), doi:10.1063/1.3000389).

Both parts assume positions without order on the mesh's scale. Atoms close to a
lattice commensurate with the mesh make the mesh errors add coherently: on a
jittered cubic lattice (``benchmarks/multipoles.py``) the measured error is up to
about twice the estimate on coarse meshes, which the safety factor covers only
in part; check crystals against a tighter setting.
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import torch

from .._core.kspace import mesh_size
from .._core.multipole_pairs import radial_functions
from .._core.validation import check_choice, check_like, check_shape, message
from ..calculators import P3MCalculator, PMECalculator
from ..multipoles import MultipoleCalculator
from ..potentials import CoulombPotential
from ._mesh import _mesh_candidates
from ._search import SAFETY
from ._validation import check_accuracy, check_cutoff, check_system

__all__ = [
    "MultipoleTuning",
    "mesh_force_error",
    "real_space_force_error",
    "tune_multipoles",
]

#: atoms of the proxy system the mesh error is measured on
PROXY_ATOMS = 96
#: of them, the atoms whose own (self) error is measured, each alone in a cell
OWN_SAMPLES = 24
#: the proxy cell's lattice vectors are at least this many smearings long
PROXY_SMEARINGS = 10.0
#: and those of the cells of the lone atoms
OWN_SMEARINGS = 3.0
# the reciprocal sum of the reference keeps exp(−σ²k²/2) above exp(−_LOG_CUT)
_LOG_CUT = 30.0
# smearings tried, as fractions of the largest one the real space allows
_SMEARING_FRACTIONS = (0.92, 0.8, 0.65)


class MultipoleTuning(NamedTuple):
    """What :func:`tune_multipoles` chose: ``smearing``, the calculator's
    ``params`` (``mesh_spacing``, ``interpolation_nodes``) and the estimated
    RMS force error (without the safety factor)."""

    smearing: float
    params: Dict[str, Any]
    force_error: float


def _moments(charges: torch.Tensor, dipoles: torch.Tensor):
    """``(⟨q²⟩, m = ⟨|μ|²⟩/3)`` as floats."""
    mean_q2 = float((charges.detach().double() ** 2).mean())
    m = float((dipoles.detach().double() ** 2).sum(dim=1).mean()) / 3.0
    return mean_q2, m


def real_space_force_error(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    volume: float,
    cutoff: float,
    smearing: float,
    prefactor: float = 1.0,
) -> float:
    """The RMS force error of the pairs beyond ``cutoff`` (module docstring).

    Args:
        charges: ``(N,)``; dipoles: ``(N, 3)``.
        volume: the cell volume; cutoff: ``r_c``; smearing: ``σ``.
        prefactor: the Coulomb prefactor of the calculator.
    """
    mean_q2, m = _moments(charges, dipoles)
    alpha = 1.0 / (math.sqrt(2.0) * smearing)
    # the integrand decays as exp(−α²r²): 12 widths cover it to rounding
    r = torch.linspace(cutoff, cutoff + 12.0 * smearing, 2001, dtype=torch.float64)
    b = radial_functions(r, alpha, 4)
    r2 = r * r
    integrand = 4.0 * math.pi * r2 * (
        mean_q2**2 * r2 * b[1] ** 2
        + 2.0 * mean_q2 * m * (3.0 * b[1] ** 2 - 2.0 * r2 * b[1] * b[2]
                               + r2**2 * b[2] ** 2)
        + m**2 * r2 * (15.0 * b[2] ** 2 - 6.0 * r2 * b[2] * b[3]
                       + r2**2 * b[3] ** 2)
    )  # fmt: skip
    density = charges.shape[0] / volume
    integral = float(torch.trapezoid(integrand, r))
    return abs(prefactor) * math.sqrt(max(density * integral, 0.0))


def _reciprocal_forces(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    smearing: float,
) -> torch.Tensor:
    """Forces of the exact reciprocal Ewald sum of charges and dipoles:
    ``E = (2π/V) Σ_{k≠0} e^{−σ²k²/2}/k² |Σ_j (q_j − i k·μ_j) e^{−ik·r_j}|²``."""
    reciprocal = 2.0 * math.pi * torch.linalg.inv(cell).t()
    k_max = math.sqrt(2.0 * _LOG_CUT) / smearing
    reach = [
        math.ceil(k_max * float(torch.linalg.norm(cell[d])) / (2.0 * math.pi))
        for d in range(3)
    ]
    axes = [torch.arange(-n, n + 1, dtype=cell.dtype) for n in reach]
    m = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    k = m @ reciprocal
    k2 = (k * k).sum(dim=1)
    keep = (k2 > 0) & (k2 <= k_max**2)
    k, k2 = k[keep], k2[keep]
    weight = torch.exp(-0.5 * smearing**2 * k2) / k2
    volume = torch.abs(torch.linalg.det(cell))
    p = positions.detach().clone().requires_grad_(True)
    phase = p @ k.t()  # (M, K)
    k_mu = dipoles @ k.t()
    # Σ_j (q_j − i k·μ_j)(cos − i sin)
    real = (charges[:, None] * torch.cos(phase) - k_mu * torch.sin(phase)).sum(0)
    imag = (-charges[:, None] * torch.sin(phase) - k_mu * torch.cos(phase)).sum(0)
    energy = 2.0 * math.pi / volume * (weight * (real**2 + imag**2)).sum()
    return -torch.autograd.grad(energy, p)[0]


def _mesh_forces(module, charges, dipoles, cell, positions) -> torch.Tensor:
    """Forces of the mesh part (and the constant self terms) of ``module``."""
    p = positions.detach().clone().requires_grad_(True)
    pairs = torch.zeros(0, 2, dtype=torch.int64)
    vectors = torch.zeros(0, 3, dtype=cell.dtype)
    energy = module.energy(charges, dipoles, cell, p, pairs, vectors)
    return -torch.autograd.grad(energy, p)[0]


def _own_forces(module, charges, dipoles, cell, positions) -> torch.Tensor:
    """Each atom's mesh force on itself (alone in the cell): one batch of
    one-atom systems."""
    n = positions.shape[0]
    p = positions.detach().clone().requires_grad_(True)
    pairs = torch.zeros(0, 2, dtype=torch.int64)
    vectors = torch.zeros(0, 3, dtype=cell.dtype)
    cells = cell.expand(n, 3, 3).contiguous()
    index = torch.arange(n)
    phi, field, _ = module.forward_batch(
        charges, dipoles, cells, p, index, pairs, vectors
    )
    energy = 0.5 * ((charges * phi).sum() - (dipoles * field).sum())
    return -torch.autograd.grad(energy, p)[0]


def mesh_force_error(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    cell: torch.Tensor,
    smearing: float,
    mesh_spacing: float,
    interpolation_nodes: int,
    method: str = "p3m",
    prefactor: float = 1.0,
    seed: int = 0,
    fixed_mesh: Optional[List[int]] = None,
) -> float:
    """The RMS force error of the mesh part, measured on a proxy (module
    docstring).

    Args:
        charges: ``(N,)``; dipoles: ``(N, 3)`` (moments drawn from these).
        cell: ``(3, 3)`` cell; the calculator's mesh is derived from it.
        smearing: ``σ``; mesh_spacing, interpolation_nodes: the calculator's.
        method: ``"p3m"`` or ``"pme"``.
        prefactor: the Coulomb prefactor; seed: of the proxy's draws.
        fixed_mesh: the calculator's mesh sizes, when it is built with them.
    """
    check_choice("method", method, ["p3m", "pme"])
    cell = cell.detach().to(torch.float64)
    ns = fixed_mesh
    if ns is None:
        lengths = [float(x) for x in torch.linalg.norm(cell, dim=1)]
        ns = mesh_size(lengths, mesh_spacing)
    kind = P3MCalculator if method == "p3m" else PMECalculator
    potential = CoulombPotential(smearing=smearing)

    def proxy(smearings: float):
        """A module on the cell cut to ``smearings`` smearings per lattice
        vector (at most the whole cell) at the same mesh spacing, and that cell."""
        lengths = torch.linalg.norm(cell, dim=1)
        sizes = [
            min(n, math.ceil(smearings * smearing * n / float(length)))
            for n, length in zip(ns, lengths)
        ]
        scale = torch.tensor([m / n for m, n in zip(sizes, ns)], dtype=torch.float64)
        calculator = kind(potential, mesh_spacing, interpolation_nodes, sizes)
        return MultipoleCalculator(calculator.to(torch.float64)), cell * scale[:, None]

    generator = np.random.default_rng(seed)
    count = PROXY_ATOMS
    drawn = torch.from_numpy(generator.integers(0, charges.shape[0], size=count))
    q = charges.detach().to(torch.float64)[drawn]
    mu = dipoles.detach().to(torch.float64)[drawn]
    fractions = torch.from_numpy(generator.uniform(size=(count, 3)))
    module, proxy_cell = proxy(PROXY_SMEARINGS)
    positions = fractions @ proxy_cell
    reference = _reciprocal_forces(q, mu, proxy_cell, positions, smearing)
    together = _mesh_forces(module, q, mu, proxy_cell, positions) - reference
    # the own error does not depend on the cell once it spans a few smearings
    module, own_cell = proxy(OWN_SMEARINGS)
    own_atoms = slice(0, OWN_SAMPLES)
    alone = _own_forces(
        module, q[own_atoms], mu[own_atoms], own_cell, fractions[own_atoms] @ own_cell
    )
    total = float((together**2).sum(dim=1).mean())
    own = float((alone**2).sum(dim=1).mean())
    proxy_volume = float(torch.abs(torch.linalg.det(proxy_cell)))
    volume = float(torch.abs(torch.linalg.det(cell)))
    per_density = max(total - own, 0.0) * proxy_volume / (count - 1)
    squared = (charges.shape[0] - 1) / volume * per_density + own
    return abs(prefactor) * math.sqrt(squared)


def _largest_smearing(charges, dipoles, volume, cutoff, target, prefactor) -> float:
    """The smearing at which the real-space error reaches ``target`` (bisection
    on ``log σ``; the error grows with ``σ``)."""
    low, high = cutoff / 40.0, cutoff
    for _ in range(60):
        middle = math.sqrt(low * high)
        error = real_space_force_error(
            charges, dipoles, volume, cutoff, middle, prefactor
        )
        low, high = (middle, high) if error < target else (low, middle)
    return low


def tune_multipoles(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: float,
    accuracy: float = 1e-3,
    *,
    method: str = "p3m",
    prefactor: float = 1.0,
    nodes_lo: Optional[int] = None,
    nodes_hi: Optional[int] = None,
    mesh_lo: int = 3,
    mesh_hi: int = 8,
) -> MultipoleTuning:
    """Smearing, mesh spacing and order of the cheapest mesh calculator of
    charges and dipoles whose RMS force error is estimated below ``accuracy``.

    For a few smearings (fractions of the largest the real space allows) and
    every node count, the coarsest mesh (bisected) whose estimated error
    ``√(ΔF_real² + ΔF_k²)`` (module docstring), times the safety factor
    :data:`~torchpme.tuning._search.SAFETY`, is within ``accuracy``; of those,
    the one of least work (``10·4N·n³`` spread entries and ``M log₂ M`` for the
    FFTs of ``M`` mesh points).

    Args:
        charges: ``(N,)`` charges; dipoles: ``(N, 3)`` dipoles.
        cell: ``(3, 3)`` cell, rows the lattice vectors.
        positions: ``(N, 3)`` positions (their count and dtype are used).
        cutoff: the real-space cutoff the calculator's pairs will use.
        accuracy: the target RMS force error (absolute, in the units of the
            prefactor).
        method: ``"p3m"`` (:class:`~torchpme.P3MCalculator`) or ``"pme"``.
        prefactor: the Coulomb prefactor of the potential.
        nodes_lo, nodes_hi: node counts tried (default: the method's range,
            3–5 for P3M, 4–7 for PME).
        mesh_lo, mesh_hi: mesh sizes ``2^e`` along the shortest lattice vector.

    Returns:
        :class:`MultipoleTuning`. If nothing meets the accuracy a ``ValueError``
        says which limits to widen.

    Example:
        >>> tuned = tune_multipoles(  # doctest: +SKIP
        ...     charges, dipoles, cell, positions, cutoff=8.0, accuracy=1e-4)
        >>> calculator = P3MCalculator(  # doctest: +SKIP
        ...     CoulombPotential(smearing=tuned.smearing), **tuned.params)
        >>> module = MultipoleCalculator(calculator)  # doctest: +SKIP
    """
    check_choice("method", method, ["p3m", "pme"])
    accuracy = check_accuracy(accuracy)
    cutoff = check_cutoff(cutoff)
    n = positions.shape[0] if positions.dim() == 2 else 0
    check_shape("charges", charges, [n], "(N,) with N atoms")
    check_shape("dipoles", dipoles, [n, 3], "(N, 3) with N atoms")
    check_like("dipoles", dipoles, positions, "positions")
    if bool(torch.all(charges == 0)) and bool(torch.all(dipoles == 0)):
        raise ValueError(
            message("charges, dipoles", "not all zero (nothing to tune for)",
                    "all zeros")
        )  # fmt: skip
    # charges of all zeros are valid here: check the system with unit charges
    check_system(torch.ones_like(charges).unsqueeze(1), cell, positions)
    low, high = (3, 5) if method == "p3m" else (4, 7)
    nodes_lo = low if nodes_lo is None else int(nodes_lo)
    nodes_hi = high if nodes_hi is None else int(nodes_hi)
    volume = float(torch.abs(torch.linalg.det(cell.detach().double())))
    lengths = [float(x) for x in torch.linalg.norm(cell.detach().double(), dim=1)]
    budget = accuracy / SAFETY
    largest = _largest_smearing(charges, dipoles, volume, cutoff, budget, prefactor)
    candidates, _, _ = _mesh_candidates(
        lengths, n, nodes_lo, nodes_hi, mesh_lo, mesh_hi
    )
    best: Optional[MultipoleTuning] = None
    best_work = math.inf
    for fraction in _SMEARING_FRACTIONS:
        smearing = largest * fraction
        real = real_space_force_error(
            charges, dipoles, volume, cutoff, smearing, prefactor
        )
        # high orders pass on coarse meshes: they set the work to beat early
        for nodes in range(nodes_hi, nodes_lo - 1, -1):
            # coarse to fine, cheaper than the best so far; the error falls
            # as the mesh grows, so the coarsest passing one is bisected for
            meshes = [
                p for p in candidates
                if p["interpolation_nodes"] == nodes
                and _work(lengths, n, p) < best_work
            ]  # fmt: skip

            def error_of(
                param: Dict[str, Any], smearing=smearing, nodes=nodes, real=real
            ) -> float:
                kspace = mesh_force_error(
                    charges, dipoles, cell, smearing, param["mesh_spacing"],
                    nodes, method, prefactor, fixed_mesh=param.get("fixed_mesh"),
                )  # fmt: skip
                return math.sqrt(real**2 + kspace**2)

            found = _coarsest_passing(meshes, error_of, budget)
            if found is not None:
                best = MultipoleTuning(smearing, dict(found[0]), found[1])
                best_work = _work(lengths, n, found[0])
    if best is None:
        raise ValueError(
            message("accuracy", f"an accuracy some candidate meets (cutoff "
                    f"{cutoff}, nodes {nodes_lo}–{nodes_hi}, meshes up to "
                    f"2^{mesh_hi})", f"{accuracy}: increase mesh_hi or the cutoff")
        )  # fmt: skip
    return best


def _coarsest_passing(meshes, error_of, budget):
    """``(param, error)`` of the first of ``meshes`` (ordered coarse to fine)
    whose error is within ``budget``, by bisection, or None."""
    low, high, found = 0, len(meshes) - 1, None
    while low <= high:
        middle = (low + high) // 2
        error = error_of(meshes[middle])
        if error <= budget:
            found, high = (meshes[middle], error), middle - 1
        else:
            low = middle + 1
    return found


def _work(lengths: List[float], n_atoms: int, param: Dict[str, Any]) -> float:
    """The rough cost of one candidate: spread and gather of ``4N`` entries of
    ``n³`` nodes against the FFTs of the mesh."""
    sizes = param.get("fixed_mesh") or mesh_size(lengths, param["mesh_spacing"])
    points = math.prod(sizes)
    nodes = param["interpolation_nodes"]
    return 10.0 * 4 * n_atoms * nodes**3 + points * math.log2(points)
