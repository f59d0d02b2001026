"""Inputs shared by the compatibility cases, the same in every interpreter.

Everything is made from NumPy with fixed seeds and turned into tensors only at the
end, so the two implementations under comparison receive identical numbers.
"""

import itertools

import numpy as np
import torch


def rock_salt(dtype=torch.float64, repeats: int = 1):
    """Conventional rock-salt cell (8 ions, lattice constant 2), repeated, charges ±1."""
    base = np.array(
        [
            [0, 0, 0],
            [1, 1, 0],
            [1, 0, 1],
            [0, 1, 1],
            [1, 0, 0],
            [0, 1, 0],
            [0, 0, 1],
            [1, 1, 1],
        ],
        dtype=float,
    )
    signs = np.array([1, 1, 1, 1, -1, -1, -1, -1], dtype=float)
    shifts = np.array(list(itertools.product(range(repeats), repeat=3)), dtype=float)
    positions = (shifts[:, None, :] * 2.0 + base[None]).reshape(-1, 3)
    charges = np.tile(signs, len(shifts)).reshape(-1, 1)
    cell = 2.0 * repeats * np.eye(3)
    return _tensors(positions, charges, cell, dtype)


def random_ions(n: int = 12, seed: int = 0, dtype=torch.float64, skew: bool = True):
    """Neutral random ions in a (skewed) cell, with a small jitter off any lattice."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.0, 0.0, 0.0], [0.6, 4.6, 0.0], [-0.4, 0.5, 5.3]])
    if not skew:
        cell = np.diag(np.diag(cell))
    fractional = rng.random((n, 3))
    positions = fractional @ cell
    charges = rng.normal(size=(n, 1))
    charges -= charges.mean()
    return _tensors(positions, charges, cell, dtype)


def _tensors(positions, charges, cell, dtype):
    return (
        torch.tensor(positions, dtype=dtype),
        torch.tensor(charges, dtype=dtype),
        torch.tensor(cell, dtype=dtype),
    )


def neighbors(positions, cell, cutoff: float, full: bool = False, periodic=True):
    """Pairs within ``cutoff`` and their distances: ``(indices (P, 2) int64,
    distances (P,))`` in the dtype of ``positions`` (see :func:`shifted_pairs`)."""
    indices, shifts = shifted_pairs(positions, cell, cutoff, full, periodic)
    vectors = pair_vectors(positions.detach(), cell.detach(), indices, shifts)
    return indices, torch.linalg.norm(vectors, dim=1)


def with_neighbors(system, cutoff: float, full: bool = False):
    """``system`` (positions, charges, cell) followed by its neighbour list."""
    positions, charges, cell = system
    return (positions, charges, cell, *neighbors(positions, cell, cutoff, full))


def shifted_pairs(positions, cell, cutoff: float, full: bool = False, periodic=True):
    """Pairs within ``cutoff`` with their integer cell shifts, by brute force in NumPy.

    Returns ``(indices (P, 2) int64, shifts (P, 3))``, the shifts in the dtype of
    ``positions``, so that ``pair_vectors`` gives ``r_j − r_i + shift · cell``
    differentiably. A half list keeps ``(i, j, shift)`` for ``i < j`` and an atom's
    own images once per ± pair; a full list every ordered pair.
    """
    pos = positions.detach().numpy().astype(float)
    box = cell.detach().numpy().astype(float)
    heights = abs(np.linalg.det(box)) / np.linalg.norm(
        np.cross(box[[1, 2, 0]], box[[2, 0, 1]]), axis=1
    )
    reach = int(np.ceil(cutoff / heights.min())) + 1 if periodic else 0
    images = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    pairs, shifts = [], []
    for i in range(len(pos)):
        for j in range(len(pos)):
            for shift in images:
                if i == j and not shift.any():
                    continue
                if not full and (i > j or (i == j and tuple(shift) < (0, 0, 0))):
                    continue
                if np.linalg.norm(pos[j] + shift @ box - pos[i]) < cutoff:
                    pairs.append((i, j))
                    shifts.append(shift)
    indices = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    shifts = torch.tensor(np.array(shifts, dtype=float), dtype=positions.dtype)
    return indices, shifts.reshape(-1, 3)


def pair_vectors(positions, cell, indices, shifts):
    """``r_j − r_i + shift · cell`` for each pair, differentiable in both inputs."""
    shifts = shifts.to(cell.dtype)
    return positions[indices[:, 1]] - positions[indices[:, 0]] + shifts @ cell
