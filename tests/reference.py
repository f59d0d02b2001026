"""Independent references for the tests: crystals, neighbour lists, a NumPy Ewald sum.

Nothing here imports torchpme: these are the yardsticks the library is measured
against, written from textbook formulas in float64 NumPy.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import erfc

# Madelung constants referred to the nearest-neighbour distance r0, energy per
# formula unit E = -M z+ z- / r0 (published values, e.g. Johnson & Templeton,
# J. Chem. Phys. 34, 2004 (1961))
MADELUNG = {
    "rocksalt": 1.747564594633,
    "cscl": 1.762674773070,
    "zincblende": 1.638055053388,
    "wurtzite": 1.641321627,
    "fluorite": 2.519392,
}


def crystal(name: str, primitive: bool = True):
    """(positions, charges, cell, n_formula_units, r0) of a named ionic crystal."""
    fcc = 0.5 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    if name == "rocksalt" and primitive:
        cell, frac_pos = 2.0 * fcc, [[0, 0, 0], [0.5, 0.5, 0.5]]
        charges, units, r0 = [1.0, -1.0], 1, 1.0
        positions = np.array(frac_pos) @ cell
    elif name == "rocksalt":
        cell = 2.0 * np.eye(3)
        positions = np.array(
            [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
        )
        charges = [
            (-1.0) ** (i + j + k) for i in (0, 1) for j in (0, 1) for k in (0, 1)
        ]
        units, r0 = 4, 1.0
    elif name == "cscl":
        cell = np.eye(3)
        positions = np.array([[0.0, 0, 0], [0.5, 0.5, 0.5]])
        charges, units, r0 = [1.0, -1.0], 1, math.sqrt(3) / 2
    elif name == "zincblende":
        cell = fcc * 1.0
        positions = np.array([[0.0, 0, 0], [0.25, 0.25, 0.25]])
        charges, units, r0 = [1.0, -1.0], 1, math.sqrt(3) / 4
    elif name == "fluorite":
        cell = fcc * 1.0
        positions = np.array([[0.0, 0, 0], [0.25, 0.25, 0.25], [-0.25, -0.25, -0.25]])
        charges, units, r0 = [2.0, -1.0, -1.0], 1, math.sqrt(3) / 4
    elif name == "wurtzite":
        a, c, u = 1.0, math.sqrt(8.0 / 3.0), 3.0 / 8.0
        cell = np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]])
        frac = np.array(
            [
                [1 / 3, 2 / 3, 0],
                [2 / 3, 1 / 3, 0.5],
                [1 / 3, 2 / 3, u],
                [2 / 3, 1 / 3, 0.5 + u],
            ]
        )
        positions = frac @ cell
        charges, units, r0 = [1.0, 1.0, -1.0, -1.0], 2, u * c
    else:
        raise ValueError(name)
    return np.asarray(positions, float), np.asarray(charges, float), cell, units, r0


def madelung_energy(name: str) -> float:
    """Reference electrostatic energy of the cell of :func:`crystal` (Gaussian units)."""
    _, _, _, units, r0 = crystal(name)
    zz = 2.0 if name == "fluorite" else 1.0  # |z+ z-| of the formula unit
    return -MADELUNG[name] * zz * units / r0


def neighbor_list(positions, cell, cutoff, full=False, periodic=(True, True, True)):
    """Brute-force periodic neighbour list: (indices (P,2) int64, shifts (P,3) float).

    Pairs (i, j, S) with |r_j + S·cell − r_i| < cutoff, i == j allowed for S != 0;
    a half list keeps one of each (i, j, S) / (j, i, −S).
    """
    positions = np.asarray(positions, float)
    cell = np.asarray(cell, float)
    inverse_heights = np.linalg.norm(np.linalg.inv(cell), axis=0)
    reach = [
        math.ceil(cutoff * inverse_heights[d]) + 1 if periodic[d] else 0
        for d in range(3)
    ]
    ranges = [range(-r, r + 1) for r in reach]
    pairs, shifts = [], []
    n = len(positions)
    for shift in itertools.product(*ranges):
        s = np.array(shift, float)
        vectors = positions[None, :, :] + s @ cell - positions[:, None, :]
        distances = np.linalg.norm(vectors, axis=-1)
        for i in range(n):
            for j in range(n):
                if distances[i, j] >= cutoff or (i == j and not any(shift)):
                    continue
                if not full and (i > j or (i == j and shift < (0, 0, 0))):
                    continue
                pairs.append((i, j))
                shifts.append(shift)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2), np.array(
        shifts, float
    ).reshape(-1, 3)


def torch_neighbors(positions, cell, cutoff, full=False, periodic=(True, True, True)):
    """Neighbour list as torch tensors, distances differentiable in positions/cell."""
    pairs, shifts = neighbor_list(
        positions.detach().numpy(), cell.detach().numpy(), cutoff, full, periodic
    )
    indices = torch.from_numpy(pairs)
    shifts = torch.from_numpy(shifts).to(positions.dtype)
    vectors = positions[indices[:, 1]] + shifts @ cell - positions[indices[:, 0]]
    return indices, torch.linalg.norm(vectors, dim=-1)


def ewald_potentials(positions, charges, cell, smearing=None, accuracy=1e-13):
    """Per-atom Coulomb potentials V_i (energy = Σ q_i V_i), tinfoil boundary.

    Classic Ewald sum with splitting exp parameter alpha = 1/(√2 σ), real-space and
    reciprocal cutoffs chosen so both tails are below ``accuracy``; neutralising
    background for net charge.
    """
    positions = np.asarray(positions, float)
    charges = np.asarray(charges, float).reshape(len(positions), -1)
    cell = np.asarray(cell, float)
    volume = abs(np.linalg.det(cell))
    if smearing is None:
        smearing = 0.35 * volume ** (1 / 3)
    alpha = 1.0 / (math.sqrt(2.0) * smearing)
    x = math.sqrt(-math.log(accuracy)) + 0.5
    r_cut, k_cut = x / alpha, 2.0 * alpha * x
    phi = np.zeros_like(charges)
    pairs, shifts = neighbor_list(positions, cell, r_cut, full=True)
    vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]
    r = np.linalg.norm(vectors, axis=1)
    np.add.at(phi, pairs[:, 0], charges[pairs[:, 1]] * (erfc(alpha * r) / r)[:, None])
    reciprocal = 2.0 * math.pi * np.linalg.inv(cell).T
    # k·a_d = 2π m_d, so |k| < k_cut needs |m_d| ≤ k_cut ‖a_d‖ / 2π
    reach = [math.ceil(k_cut * np.linalg.norm(a) / (2 * math.pi)) + 1 for a in cell]
    for m in itertools.product(*[range(-r, r + 1) for r in reach]):
        if not any(m):
            continue
        k = np.array(m, float) @ reciprocal
        k2 = k @ k
        if k2 > k_cut**2:
            continue
        phase = positions @ k
        s_cos = np.cos(phase) @ charges
        s_sin = np.sin(phase) @ charges
        weight = 4.0 * math.pi / volume * math.exp(-k2 / (4 * alpha**2)) / k2
        phi += weight * (
            np.cos(phase)[:, None] * s_cos + np.sin(phase)[:, None] * s_sin
        )
    phi -= 2.0 * alpha / math.sqrt(math.pi) * charges
    phi -= math.pi / (volume * alpha**2) * charges.sum(axis=0)
    return phi / 2.0


def inverse_power_potentials(positions, charges, cell, exponent, r_max):
    """Per-atom potentials of 1/r^p by a direct sum over images within r_max (p > 3)."""
    positions = np.asarray(positions, float)
    charges = np.asarray(charges, float).reshape(len(positions), -1)
    pairs, shifts = neighbor_list(positions, cell, r_max, full=True)
    vectors = (
        positions[pairs[:, 1]] + shifts @ np.asarray(cell) - positions[pairs[:, 0]]
    )
    r = np.linalg.norm(vectors, axis=1)
    phi = np.zeros_like(charges)
    np.add.at(phi, pairs[:, 0], charges[pairs[:, 1]] * (r**-exponent)[:, None])
    return phi / 2.0


def to_torch(*arrays, dtype=torch.float64):
    """Convert NumPy arrays to torch tensors of ``dtype``."""
    return [torch.as_tensor(np.asarray(a), dtype=dtype) for a in arrays]


def torch_version() -> tuple:
    """``(major, minor)`` of the installed PyTorch."""
    return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


# torch.compile of the calculators needs PyTorch >= 2.5: 2.3's dynamo rejects the
# input validation (Tensor.is_complex) and then hangs (checked: 2.3.1 fails; 2.5.1,
# 2.11 and 2.13 pass)
requires_compile = pytest.mark.skipif(
    torch_version() < (2, 5),
    reason="torch.compile of the calculators needs PyTorch >= 2.5",
)


def ewald_sum(positions, charges, cell, accuracy=1e-13):
    """Energy, per-atom potentials and forces of a neutral 3-D periodic system.

    Classic Ewald sum (tinfoil boundary, no background term: the charges must sum
    to zero), vectorised over the pairs of each lattice image; both tails are
    below ``accuracy`` relative to the kernels. The splitting ``alpha`` balances
    the image count and the k-vector count.

    Args:
        positions: ``(N, 3)``; charges ``(N,)``; cell ``(3, 3)``, rows are
            lattice vectors.
        accuracy: relative size of the neglected kernel tails.

    Returns:
        ``(energy, potentials (N,), forces (N, 3))`` with ``energy = Σ q_i V_i``
        and ``forces = −∂E/∂r``, Gaussian units (prefactor 1).
    """
    positions = np.asarray(positions, float)
    charges = np.asarray(charges, float).reshape(-1)
    cell = np.asarray(cell, float)
    if abs(charges.sum()) > 1e-12 * max(1.0, np.abs(charges).sum()):
        raise ValueError("ewald_sum needs a neutral system")
    n = len(positions)
    volume = abs(np.linalg.det(cell))
    alpha = math.sqrt(math.pi) * (n / volume**2) ** (1 / 6)
    x = math.sqrt(-math.log(accuracy)) + 0.5
    r_cut, k_cut = x / alpha, 2.0 * alpha * x
    phi = np.zeros(n)
    forces = np.zeros((n, 3))
    inverse_heights = np.linalg.norm(np.linalg.inv(cell), axis=0)
    reach = [math.ceil(r_cut * h) + 1 for h in inverse_heights]
    two_over_root_pi = 2.0 / math.sqrt(math.pi)
    for shift in itertools.product(*[range(-r, r + 1) for r in reach]):
        # vectors[i, j] points from atom i to the image of atom j
        vectors = positions[None, :, :] + np.array(shift, float) @ cell
        vectors = vectors - positions[:, None, :]
        r = np.linalg.norm(vectors, axis=-1)
        keep = r < r_cut
        if not any(shift):
            np.fill_diagonal(keep, False)
        if not keep.any():
            continue
        r_safe = np.where(keep, r, 1.0)
        kernel = np.where(keep, erfc(alpha * r_safe) / r_safe, 0.0)
        phi += kernel @ charges
        # −d/dr [erfc(αr)/r] / r, the radial force factor over r
        slope = kernel + two_over_root_pi * alpha * np.exp(-((alpha * r_safe) ** 2))
        slope = np.where(keep, slope / r_safe**2, 0.0)
        forces -= charges[:, None] * np.einsum("ij,ijc->ic", slope * charges, vectors)
    reciprocal = 2.0 * math.pi * np.linalg.inv(cell).T
    k_reach = [math.ceil(k_cut * np.linalg.norm(a) / (2 * math.pi)) + 1 for a in cell]
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in k_reach], indexing="ij")
    m = np.stack([g.ravel() for g in grids], axis=1).astype(float)
    k = m @ reciprocal
    k2 = np.einsum("kc,kc->k", k, k)
    k, k2 = k[(k2 > 0) & (k2 <= k_cut**2)], k2[(k2 > 0) & (k2 <= k_cut**2)]
    weight = 4.0 * math.pi / volume * np.exp(-k2 / (4 * alpha**2)) / k2
    phase = positions @ k.T  # (N, K)
    cos, sin = np.cos(phase), np.sin(phase)
    s_cos, s_sin = charges @ cos, charges @ sin
    phi += cos @ (weight * s_cos) + sin @ (weight * s_sin)
    forces += charges[:, None] * ((sin * s_cos - cos * s_sin) * weight) @ k
    phi -= two_over_root_pi * alpha * charges
    potentials = phi / 2.0
    return float(charges @ potentials), potentials, forces
