"""The benchmark systems: rock-salt supercells, their neighbour lists and the
converged reference forces. Plain NumPy/PyTorch (and vesin when installed), so that
any implementation of the API can run them."""

import numpy as np
import torch

LATTICE = 5.64


def rocksalt(n_atoms: int, dtype=torch.float64, seed: int = 0):
    """Positions ``(N, 3)``, charges ``(N, 1)`` and cubic cell of an NaCl supercell
    (a = 5.64 Å, ``N = 8 m³`` atoms displaced by 0.1 Å)."""
    repeat = round((n_atoms / 8) ** (1 / 3))
    if 8 * repeat**3 != n_atoms:
        raise ValueError(f"n_atoms must be 8 m³, got {n_atoms}")
    corners = np.array(
        [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float
    )
    signs = np.array([(-1.0) ** int(c.sum()) for c in corners])
    grid = np.array(
        [
            [i, j, k]
            for i in range(repeat)
            for j in range(repeat)
            for k in range(repeat)
        ],
        dtype=float,
    )
    positions = (grid[:, None, :] + 0.5 * corners[None]).reshape(-1, 3) * LATTICE
    positions += np.random.default_rng(seed).normal(scale=0.1, size=positions.shape)
    charges = np.tile(signs, len(grid))[:, None]
    cell = np.eye(3) * LATTICE * repeat
    return tuple(torch.tensor(a, dtype=dtype) for a in (positions, charges, cell))


def neighbors(positions: torch.Tensor, cell: torch.Tensor, cutoff: float):
    """Half neighbour list ``(P, 2)`` and integer cell shifts ``(P, 3)`` (as the
    positions' dtype): vesin when installed, else the minimum image of a cubic
    cell (cutoff < half the box)."""
    try:
        import vesin
    except ImportError:
        return _minimum_image(positions, cell, cutoff)
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=False)
    i, j, s = calculator.compute(
        points=positions.double().numpy(),
        box=cell.double().numpy(),
        periodic=True,
        quantities="ijS",
    )
    indices = torch.stack([torch.from_numpy(i.astype("int64")),
                           torch.from_numpy(j.astype("int64"))], dim=1)  # fmt: skip
    return indices, torch.from_numpy(s.astype("float64")).to(positions.dtype)


def _minimum_image(positions: torch.Tensor, cell: torch.Tensor, cutoff: float):
    box = float(cell[0, 0])
    if not cutoff < box / 2:
        raise ValueError("the minimum image needs cutoff < box / 2")
    pairs, shifts = [], []
    for start in range(0, len(positions), 512):
        block = positions[start : start + 512]
        vectors = positions[None, :, :] - block[:, None, :]
        shift = -torch.round(vectors / box)
        r = torch.linalg.norm(vectors + box * shift, dim=-1)
        i, j = torch.nonzero(r < cutoff, as_tuple=True)
        keep = i + start < j
        pairs.append(torch.stack([i[keep] + start, j[keep]], dim=1))
        shifts.append(shift[i[keep], j[keep]])
    return torch.cat(pairs), torch.cat(shifts)


def pair_distances(positions, cell, indices, shifts):
    """``‖r_j − r_i + S A‖`` in plain PyTorch (the same code for every
    implementation), differentiable in positions and cell."""
    vectors = positions[indices[:, 1]] + shifts @ cell - positions[indices[:, 0]]
    return torch.linalg.norm(vectors, dim=1)


def reference_forces(positions, charges, cell):
    """Forces of a converged PME (σ 1.6 Å, 0.3 Å spacing, 7 nodes, 12 Å cutoff or
    just under half the box), in float64."""
    import torchpme

    cell = cell.double()
    charges = charges.double()
    potential = torchpme.CoulombPotential(smearing=1.6)
    calculator = torchpme.PMECalculator(potential, mesh_spacing=0.3,
                                        interpolation_nodes=7)  # fmt: skip
    calculator = calculator.to(dtype=torch.float64)
    pos = positions.double().clone().requires_grad_(True)
    cutoff = min(12.0, 0.49 * float(cell[0, 0]))
    indices, shifts = neighbors(pos.detach(), cell, cutoff)
    distances = pair_distances(pos, cell, indices, shifts)
    energy = (charges * calculator(charges, cell, pos, indices, distances)).sum()
    return -torch.autograd.grad(energy, pos)[0]
