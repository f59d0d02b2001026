"""Batches: packed systems (``forward_batch``) and ``torch.vmap`` over padded Ewald
inputs give exactly the per-system results, values and gradients."""

import numpy as np
import pytest
import torch
from reference import neighbor_list

from torchpme import (
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
)
from torchpme.lib import compute_batched_kvectors

DTYPE = torch.float64


def systems(count=5, seed=0):
    """Systems of different sizes and cells, some sharing a mesh size."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        n = int(rng.integers(3, 9))
        scale = 3.0 + 0.8 * (index % 3)
        cell = scale * np.eye(3) + rng.uniform(-0.3, 0.3, size=(3, 3))
        positions = rng.uniform(0, 1, size=(n, 3)) @ cell
        charges = rng.normal(size=(n, 2))
        charges[:, 0] -= charges[:, 0].mean()
        out.append(
            tuple(torch.tensor(a, dtype=DTYPE) for a in (positions, charges, cell))
        )
    return out


def pair_list(positions, cell, cutoff):
    pairs, shifts = neighbor_list(positions.numpy(), cell.numpy(), cutoff)
    return torch.from_numpy(pairs), torch.from_numpy(shifts)


def distances(positions, cell, pairs, shifts):
    vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]
    return torch.linalg.norm(vectors, dim=-1)


CALCULATORS = {
    "ewald": lambda p: EwaldCalculator(p, lr_wavelength=0.8),
    "pme": lambda p: PMECalculator(p, mesh_spacing=0.6, interpolation_nodes=5),
    "p3m": lambda p: P3MCalculator(p, mesh_spacing=0.6, interpolation_nodes=4),
    # one mesh for every system (forward uses it too, whatever the cell)
    "pme-fixed": lambda p: PMECalculator(p, 0.6, 5, fixed_mesh=[9, 10, 11]),
    "p3m-fixed": lambda p: P3MCalculator(p, 0.6, 4, fixed_mesh=[12, 10, 9]),
}


@pytest.mark.parametrize("method", list(CALCULATORS))
@pytest.mark.parametrize("mesh_stack", [None, 1, 2 * 16**3])
def test_forward_batch_equals_loop(method, mesh_stack, monkeypatch):
    """Also with the meshes of a group transformed one at a time, or two of 16³ at a
    time (a group then spans several stacks)."""
    if mesh_stack is not None:
        if method == "ewald":
            pytest.skip("no meshes")
        from torchpme._core import defaults

        monkeypatch.setattr(defaults, "MESH_STACK", mesh_stack)
    calculator = CALCULATORS[method](CoulombPotential(smearing=0.7))
    data = systems()
    lists = [pair_list(p, c, 2.5) for p, _, c in data]
    leaves = [
        (p.clone().requires_grad_(True), q.clone(), c.clone().requires_grad_(True))
        for p, q, c in data
    ]

    looped, looped_energy = [], 0.0
    for (positions, charges, cell), (pairs, shifts) in zip(leaves, lists, strict=True):
        result = calculator(
            charges, cell, positions, pairs, distances(positions, cell, pairs, shifts)
        )
        looped.append(result)
        looped_energy = looped_energy + (charges * result).sum()
    grads_loop = torch.autograd.grad(
        looped_energy, [t for leaf in leaves for t in (leaf[0], leaf[2])]
    )

    offsets = np.cumsum([0] + [len(p) for p, _, _ in data])
    positions = torch.cat([leaf[0] for leaf in leaves])
    charges = torch.cat([leaf[1] for leaf in leaves])
    cells = torch.stack([leaf[2] for leaf in leaves])
    system_index = torch.cat(
        [
            torch.full((len(p),), i, dtype=torch.int64)
            for i, (p, _, _) in enumerate(data)
        ]
    )
    pairs = torch.cat([pl + int(o) for (pl, _), o in zip(lists, offsets, strict=False)])
    shifts = torch.cat([s for _, s in lists])
    owner = system_index[pairs[:, 0]]
    vectors = (
        positions[pairs[:, 1]]
        + torch.einsum("pi,pij->pj", shifts, cells[owner])
        - positions[pairs[:, 0]]
    )
    batched = calculator.forward_batch(
        charges,
        cells,
        positions,
        system_index,
        pairs,
        torch.linalg.norm(vectors, dim=-1),
    )
    torch.testing.assert_close(batched, torch.cat(looped), atol=1e-12, rtol=0)
    energy = (charges * batched).sum()
    grads_batch = torch.autograd.grad(
        energy, [t for leaf in leaves for t in (leaf[0], leaf[2])]
    )
    for a, b in zip(grads_batch, grads_loop, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["pme", "p3m"])
@pytest.mark.parametrize("mesh_stack", [None, 1, 2 * 16**3])
def test_forward_batch_atoms_in_any_order(method, mesh_stack, monkeypatch):
    """The systems' atoms need not be packed system by system: shuffling the atoms
    (and renumbering the pairs) shuffles the potentials and the forces, also when
    a group's meshes are transformed in stacks."""
    if mesh_stack is not None:
        from torchpme._core import defaults

        monkeypatch.setattr(defaults, "MESH_STACK", mesh_stack)
    calculator = CALCULATORS[method](CoulombPotential(smearing=0.7))
    data = systems(count=6, seed=3)
    lists = [pair_list(p, c, 2.5) for p, _, c in data]
    offsets = np.cumsum([0] + [len(p) for p, _, _ in data])
    positions = torch.cat([p for p, _, _ in data])
    charges = torch.cat([q for _, q, _ in data])
    cells = torch.stack([c for _, _, c in data])
    system_index = torch.cat(
        [torch.full((len(p),), i) for i, (p, _, _) in enumerate(data)]
    )
    pairs = torch.cat([pl + int(o) for (pl, _), o in zip(lists, offsets, strict=False)])
    shifts = torch.cat([s for _, s in lists])

    def potentials_and_forces(order):
        # atom j of the shuffled batch is atom order[j] of the packed one
        new_index = torch.empty_like(order)
        new_index[order] = torch.arange(len(order))
        pos = positions[order].clone().requires_grad_(True)
        owner = system_index[order][new_index[pairs[:, 0]]]
        vectors = (
            pos[new_index[pairs[:, 1]]]
            + torch.einsum("pi,pij->pj", shifts, cells[owner])
            - pos[new_index[pairs[:, 0]]]
        )
        result = calculator.forward_batch(
            charges[order],
            cells,
            pos,
            system_index[order],
            new_index[pairs],
            torch.linalg.norm(vectors, dim=-1),
        )
        (forces,) = torch.autograd.grad(-(charges[order] * result).sum(), pos)
        return result, forces

    packed = potentials_and_forces(torch.arange(len(positions)))
    shuffle = torch.from_numpy(np.random.default_rng(7).permutation(len(positions)))
    shuffled = potentials_and_forces(shuffle)
    for a, b in zip(shuffled, packed, strict=True):
        torch.testing.assert_close(a, b[shuffle], atol=1e-12, rtol=0)


def test_vmap_ewald_with_padding_equals_loop():
    """API.md §5.5: padded systems, node/pair masks and precomputed k-vectors."""
    calculator = EwaldCalculator(CoulombPotential(smearing=0.7), lr_wavelength=0.8)
    data = systems(count=3, seed=4)
    n_max = max(len(p) for p, _, _ in data)
    lists = [pair_list(p, c, 2.5) for p, _, c in data]
    p_max = max(len(pairs) for pairs, _ in lists)
    cells = torch.stack([c for _, _, c in data])
    kvectors = compute_batched_kvectors(0.8, cells)
    padded = {k: [] for k in ("q", "r", "i", "d", "node", "pair")}
    expected = []
    for (positions, charges, cell), (pairs, shifts) in zip(data, lists, strict=True):
        dist = distances(positions, cell, pairs, shifts)
        expected.append(calculator(charges, cell, positions, pairs, dist))
        n, p = len(positions), len(pairs)
        padded["q"].append(torch.cat([charges, torch.zeros(n_max - n, 2, dtype=DTYPE)]))
        padded["r"].append(
            torch.cat([positions, torch.zeros(n_max - n, 3, dtype=DTYPE)])
        )
        padded["i"].append(
            torch.cat([pairs, torch.zeros(p_max - p, 2, dtype=torch.int64)])
        )
        padded["d"].append(torch.cat([dist, torch.zeros(p_max - p, dtype=DTYPE)]))
        padded["node"].append(torch.arange(n_max) < n)
        padded["pair"].append(torch.arange(p_max) < p)
    stacked = {k: torch.stack(v) for k, v in padded.items()}
    periodic = torch.ones(len(data), 3, dtype=torch.bool)
    result = torch.vmap(calculator.forward)(
        stacked["q"],
        cells,
        stacked["r"],
        stacked["i"],
        stacked["d"],
        periodic,
        stacked["node"],
        stacked["pair"],
        kvectors,
    )
    for b, reference in enumerate(expected):
        torch.testing.assert_close(
            result[b, : len(reference)], reference, atol=1e-12, rtol=0
        )
