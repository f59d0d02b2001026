"""Neighbour lists: both backends against an independent NumPy brute force and ASE."""

import itertools

import numpy as np
import pytest
import torch

from torchpme.neighbors import (
    compute_neighbors,
    has_vesin,
    neighbor_pairs,
    pair_distances,
)

BACKENDS = [
    "torch",
    pytest.param(
        "vesin",
        marks=pytest.mark.skipif(not has_vesin(), reason="vesin is not installed"),
    ),
]
PERIODIC = {
    "3d": [True, True, True],
    "slab": [True, True, False],
    "wire": [False, True, False],
    "none": [False, False, False],
}
TRICLINIC = np.array([[3.0, 0.0, 0.0], [1.0, 2.5, 0.0], [0.3, -0.4, 2.8]])


def numpy_pairs(positions, cell, cutoff, periodic):
    """Every ordered pair (i, j, S) with |r_j - r_i + S A| < cutoff, by plain loops
    over a generous range of images (no wrapping, no cell lists)."""
    inverse = np.linalg.inv(cell)
    spacing = 1.0 / np.linalg.norm(inverse, axis=0)
    extent = np.abs(positions @ inverse).max(axis=0)
    reach = [
        int(np.ceil(cutoff / spacing[d] + 2 * extent[d])) + 1 if periodic[d] else 0
        for d in range(3)
    ]
    result = {}
    n = len(positions)
    for shift in itertools.product(*[range(-r, r + 1) for r in reach]):
        translation = np.array(shift) @ cell
        for i in range(n):
            vectors = positions - positions[i] + translation
            distances = np.sqrt((vectors**2).sum(axis=1))
            for j in np.nonzero(distances < cutoff)[0]:
                if i == j and shift == (0, 0, 0):
                    continue
                result[(i, int(j), shift)] = distances[j]
    return result


def canonical(indices, shifts):
    """Unordered pairs: (i, j, S) and (j, i, -S) are the same pair."""
    out = []
    for (i, j), s in zip(indices.tolist(), shifts.tolist()):
        s = tuple(s)
        if i > j or (i == j and s < (0, 0, 0)):
            i, j, s = j, i, tuple(-x for x in s)
        out.append((i, j, s))
    return out


def random_system(seed, n_atoms=7, scale=3.0):
    rng = np.random.default_rng(seed)
    # positions deliberately outside the cell: wrapping is the library's job
    positions = rng.normal(size=(n_atoms, 3)) * scale
    return torch.tensor(positions), torch.tensor(TRICLINIC)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("periodic", PERIODIC.values(), ids=PERIODIC.keys())
@pytest.mark.parametrize("full_list", [False, True], ids=["half", "full"])
def test_matches_numpy_brute_force(backend, periodic, full_list):
    positions, cell = random_system(1)
    cutoff = 3.3
    reference = numpy_pairs(positions.numpy(), cell.numpy(), cutoff, periodic)
    indices, distances, shifts = compute_neighbors(
        positions, cell, cutoff, periodic, full_list, backend, return_shifts=True
    )
    assert indices.dtype == torch.int64 and shifts.dtype == torch.int64
    assert indices.shape[1] == 2 and distances.shape == (indices.shape[0],)
    found = {
        (i, j, tuple(s)): d
        for (i, j), s, d in zip(indices.tolist(), shifts.tolist(), distances.tolist())
    }
    if full_list:
        assert set(found) == set(reference)
    else:
        # every unordered pair exactly once
        pairs = canonical(indices, shifts)
        assert len(pairs) == len(set(pairs))
        assert 2 * len(pairs) == len(reference)
        assert set(pairs) == set(canonical(*_ordered(reference)))
    for key, value in found.items():
        assert value == pytest.approx(reference[key], abs=1e-12)


def _ordered(reference):
    keys = list(reference)
    indices = torch.tensor([[i, j] for i, j, _ in keys])
    shifts = torch.tensor([s for _, _, s in keys])
    return indices, shifts


@pytest.mark.skipif(not has_vesin(), reason="vesin is not installed")
@pytest.mark.parametrize("periodic", PERIODIC.values(), ids=PERIODIC.keys())
def test_vesin_and_torch_agree(periodic):
    positions, cell = random_system(2, n_atoms=12, scale=2.0)
    lists = [
        neighbor_pairs(positions, cell, 2.7, periodic, backend=backend)
        for backend in ("vesin", "torch")
    ]
    assert sorted(canonical(*lists[0])) == sorted(canonical(*lists[1]))


def test_matches_ase_neighbor_list():
    ase_neighborlist = pytest.importorskip("ase.neighborlist")
    import ase

    positions, cell = random_system(3, n_atoms=10)
    atoms = ase.Atoms("H10", positions=positions.numpy(), cell=cell.numpy(), pbc=True)
    i, _j, d = ase_neighborlist.neighbor_list("ijd", atoms, 3.0, self_interaction=False)
    indices, distances = compute_neighbors(positions, cell, 3.0, full_list=True)
    assert len(i) == indices.shape[0]
    np.testing.assert_allclose(np.sort(d), np.sort(distances.numpy()), atol=1e-12)


def test_cutoff_larger_than_cell_finds_many_images():
    # a 1 Å cubic cell with a 2.5 Å cutoff: count lattice points analytically
    positions = torch.zeros(1, 3, dtype=torch.float64)
    indices, _distances = compute_neighbors(
        positions, torch.eye(3, dtype=torch.float64), 2.5, backend="torch"
    )
    points = [
        p
        for p in itertools.product(range(-3, 4), repeat=3)
        if 0 < sum(x * x for x in p) < 6.25
    ]
    assert indices.shape[0] == len(points) // 2
    assert (indices == 0).all()


def test_free_axis_may_have_zero_cell_row():
    positions, _ = random_system(4)
    cell = torch.tensor(TRICLINIC)
    cell[2] = 0.0
    slab = compute_neighbors(positions, cell, 3.0, [True, True, False], backend="torch")
    reference = numpy_pairs(
        positions.numpy(), TRICLINIC, 3.0, [True, True, False]
    )  # any third row gives the same answer for a free axis
    assert 2 * slab[0].shape[0] == len(reference)


def test_no_cell_means_open_boundaries():
    positions, _ = random_system(5)
    indices, _distances = compute_neighbors(positions, None, 4.0, backend="torch")
    reference = numpy_pairs(positions.numpy(), np.eye(3), 4.0, [False] * 3)
    assert 2 * indices.shape[0] == len(reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_positions(dtype):
    positions, cell = random_system(6)
    _, distances = compute_neighbors(positions.to(dtype), cell.to(dtype), 3.0)
    assert distances.dtype == dtype


def test_distances_are_differentiable_in_positions_and_cell():
    positions, cell = random_system(7, n_atoms=5)
    indices, shifts = neighbor_pairs(positions, cell, 3.0)
    positions.requires_grad_(True)
    cell.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, c: pair_distances(p, c, indices, shifts), (positions, cell)
    )


def test_distances_under_homogeneous_strain():
    # scaling positions and cell by s scales every distance by s: d(Σr)/ds = Σr
    positions, cell = random_system(8, n_atoms=5)
    indices, shifts = neighbor_pairs(positions, cell, 3.0)
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    total = pair_distances(positions * scale, cell * scale, indices, shifts).sum()
    (gradient,) = torch.autograd.grad(total, scale)
    assert float(gradient) == pytest.approx(float(total.detach()), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"cutoff": -1.0}, ValueError, "`cutoff` must be"),
        ({"cutoff": float("nan")}, ValueError, "`cutoff` must be"),
        ({"backend": "cuda-magic"}, ValueError, "`backend` must be one of"),
        ({"periodic": [True, False]}, ValueError, "`periodic` must be"),
        ({"positions": torch.zeros(4, 2)}, ValueError, "`positions` must be"),
        (
            {"cell": torch.zeros(3, 3, dtype=torch.float64)},
            ValueError,
            "`cell` must be",
        ),
        ({"cell": torch.eye(3, dtype=torch.float32)}, TypeError, "`cell` must be"),
    ],
    ids=[
        "negative-cutoff",
        "nan-cutoff",
        "backend",
        "periodic",
        "positions",
        "singular-cell",
        "cell-dtype",
    ],
)
def test_bad_input_names_the_argument(kwargs, error, text):
    arguments = {
        "positions": torch.zeros(4, 3, dtype=torch.float64),
        "cell": torch.eye(3, dtype=torch.float64),
        "cutoff": 1.0,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=text):
        compute_neighbors(**arguments)


def test_cell_required_for_periodic():
    with pytest.raises(ValueError, match="`cell` must be"):
        compute_neighbors(torch.zeros(2, 3), None, 1.0, periodic=True)
