"""Hard but valid geometries give the results of their well-conditioned equivalents.

* strongly skewed and left-handed cells (lattice-vector angles down to 4°, a
  rhombohedral cell of 20° angles), compared with the Minkowski-reduced cell of
  the same lattice (``ase.geometry.minkowski_reduce``) and wrapped positions;
* atoms thousands of cell lengths outside the cell;
* huge and tiny systems: ``E(λ·system) = E(system)/λ`` for Coulomb when every
  length (positions, cell, smearing, mesh spacing, wavelength, cutoff) is scaled;
* a large net charge (neutralising background): NumPy Ewald and independence of
  the smearing;
* two atoms 1e-6 apart: huge but finite, and ``E − q₁q₂/δ`` tends to the energy
  of the merged charge;
* a very anisotropic 2 x 2 x 40 cell, also written with a skewed basis.

References: the NumPy Ewald sum of ``tests/reference.py``, evaluated on reduced
(near-orthogonal) cells only — its reciprocal-space box, ``|m_d| ≤ ⌈k_c/|b_d|⌉ + 1``,
is too small for strongly skewed cells, where ``|m_d|`` must reach
``k_c |a_d| / 2π`` — and exact identities (lattice equivalence, scaling).
"""

import math

import numpy as np
import pytest
import torch
from ase.geometry import cellpar_to_cell, minkowski_reduce
from reference import ewald_potentials, neighbor_list

from torchpme import (
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
    testing,
)

SMEARING = 0.5
CUTOFF = 3.6
METHODS = ["ewald", "pme", "p3m"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
# largest per-atom error against the NumPy Ewald sum, relative to the largest
# potential, with the settings of make_calculator (measured on skewed and reduced
# cells: Ewald ~1e-13, PME ~7e-6, P3M ~2e-7; bounds with a margin of about 3)
ACCURACY = {"ewald": 1e-10, "pme": 2e-5, "p3m": 1e-6}
EPS32 = float(torch.finfo(torch.float32).eps)

# a general triclinic cell whose entries are exact in float32 (multiples of 1/16),
# as are positions on a 1/1024 grid of Cartesian coordinates even after adding
# thousands of lattice vectors (|r| < 2^14)
BASE_CELL = np.array([[4.5, 0.0, 0.0], [0.75, 4.25, 0.0], [-0.5, 0.625, 4.75]])


def make_calculator(method, scale=1.0, smearing=SMEARING):
    """Calculator with all lengths multiplied by ``scale``."""
    potential = CoulombPotential(smearing=smearing * scale)
    if method == "ewald":
        return EwaldCalculator(potential, lr_wavelength=smearing * scale / 2.5)
    if method == "pme":
        return PMECalculator(potential, smearing * scale / 2, interpolation_nodes=6)
    return P3MCalculator(potential, smearing * scale / 2, interpolation_nodes=5)


def wrap(positions, cell):
    fractional = positions @ np.linalg.inv(cell)
    return (fractional - np.floor(fractional)) @ cell


def potentials(method, dtype, charges, cell, positions, scale=1.0, images=None):
    """Per-atom potentials (float64 NumPy) with a reference neighbour list.

    ``images``: integer lattice translations per atom ``(N, 3)`` applied to the
    positions given to the calculator; the neighbour list (and so the real-space
    distances) is that of the untranslated positions.
    """
    pairs, shifts = neighbor_list(positions, cell, CUTOFF * scale)
    vectors = positions[pairs[:, 1]] + shifts @ cell - positions[pairs[:, 0]]
    moved = positions if images is None else positions + images @ cell
    result = make_calculator(method, scale)(
        torch.tensor(charges, dtype=dtype),
        torch.tensor(cell, dtype=dtype),
        torch.tensor(moved, dtype=dtype),
        torch.from_numpy(pairs),
        torch.tensor(np.linalg.norm(vectors, axis=1), dtype=dtype),
    )
    return result.detach().to(torch.float64).numpy()


def random_system(n_atoms=6, neutral=True, seed=0, cell=BASE_CELL):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0.0, 1.0, size=(n_atoms, 3)) @ cell
    positions = np.round(positions * 1024.0) / 1024.0  # exact in float32
    charges = rng.uniform(-1.5, 1.5, size=(n_atoms, 1))
    if neutral:
        charges -= charges.mean(axis=0)
    return charges, positions


def tolerance(method, dtype, reference):
    scale = np.abs(reference).max()
    relative = ACCURACY[method]
    if dtype == torch.float32:
        # float32 sums over meshes of up to 2e6 points
        relative = max(relative, 5 * testing.TOLERANCES[torch.float32]["rtol"])
    return relative * scale


def angles(cell):
    """The three angles between lattice vectors, degrees."""
    lengths = np.linalg.norm(cell, axis=1)
    return [
        math.degrees(math.acos(cell[i] @ cell[j] / lengths[i] / lengths[j]))
        for i, j in [(1, 2), (0, 2), (0, 1)]
    ]


# unimodular integer matrices: the same lattice written with another basis
SKEWED = {
    "skewed-17deg": (np.array([[1, 0, 0], [3, 1, 0], [0, 0, 1]]), BASE_CELL),
    "skewed-17-38-53deg": (np.array([[1, 0, 0], [3, 1, 0], [2, 3, 1]]), BASE_CELL),
    "left-handed-4deg": (np.array([[1, 2, 0], [2, 5, 0], [0, 3, -1]]), BASE_CELL),
    "left-handed-17deg": (np.array([[1, 0, 0], [3, 1, 0], [0, 0, -1]]), BASE_CELL),
    "rhombohedral-20deg": (
        np.eye(3, dtype=int),
        cellpar_to_cell([6, 6, 6, 20, 20, 20]),
    ),
    "rhombohedral-20deg-left-handed": (
        np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]),
        cellpar_to_cell([6, 6, 6, 20, 20, 20]),
    ),
}


_REFERENCES = {}


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(SKEWED))
def test_skewed_cell_equals_reduced_cell(case, method, dtype):
    matrix, base = SKEWED[case]
    hard = matrix @ base
    assert min(angles(hard)) < 21.0
    assert (np.linalg.det(hard) < 0) == ("left-handed" in case)
    reduced, _ = minkowski_reduce(hard)
    assert min(angles(reduced)) > 55.0
    charges, positions = random_system(seed=len(case), cell=hard)
    positions = wrap(positions, hard)  # atoms inside the skewed cell
    if case not in _REFERENCES:  # the NumPy sum is slow: once per case
        _REFERENCES[case] = ewald_potentials(wrap(positions, reduced), charges, reduced)
    reference = _REFERENCES[case]
    on_hard = potentials(method, dtype, charges, hard, positions)
    on_reduced = potentials(method, dtype, charges, reduced, wrap(positions, reduced))
    atol = tolerance(method, dtype, reference)
    np.testing.assert_allclose(on_hard, reference, atol=atol, rtol=0)
    np.testing.assert_allclose(on_reduced, reference, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_atoms_thousands_of_cells_away(method, dtype):
    """Each atom moved by up to ±3000 lattice vectors (|r| ≈ 1.4e4): positions
    stay exact in float32, so only the computation can lose digits."""
    charges, positions = random_system(seed=11)
    rng = np.random.default_rng(5)
    images = rng.integers(-3000, 3001, size=positions.shape).astype(float)
    far = positions + images @ BASE_CELL
    assert np.abs(far).max() > 1e4
    assert np.array_equal(far.astype(np.float32).astype(np.float64), far)
    near = potentials(method, torch.float64, charges, BASE_CELL, positions)
    moved = potentials(method, dtype, charges, BASE_CELL, positions, images=images)
    scale = np.abs(near).max()
    if dtype == torch.float64:
        atol = 1e-11 * scale
    elif method == "ewald":
        # phases k·r of the unwrapped positions: error eps·|k||r|, with the
        # relevant |k| ~ 1/σ (measured: 4e-4 to 7e-4 here, 8x PME's)
        atol = 2.0 * EPS32 * np.abs(far).max() / SMEARING * scale
    else:
        # PME/P3M wrap fractional coordinates F (|F| ≈ 3000), known to eps·F
        fractional = np.abs(far @ np.linalg.inv(BASE_CELL)).max()
        atol = 2.0 * EPS32 * fractional * scale
    np.testing.assert_allclose(moved, near, atol=atol, rtol=0)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_scale_invariance(method, dtype, scale):
    """Coulomb: potentials scale as 1/λ when every length is multiplied by λ."""
    charges, positions = random_system(seed=3, neutral=False)
    base = potentials(method, torch.float64, charges, BASE_CELL, positions)
    scaled = potentials(
        method, dtype, charges, scale * BASE_CELL, scale * positions, scale=scale
    )
    tol = testing.tolerance(dtype, float(np.abs(base).max()))
    np.testing.assert_allclose(scaled * scale, base, **tol)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_large_net_charge(method, dtype):
    """A +20 ion among small charges (net charge ≈ 20): NumPy Ewald with a
    neutralising background, and no dependence on the smearing."""
    charges, positions = random_system(n_atoms=8, seed=7, neutral=True)
    charges[0, 0] += 20.0
    reference = ewald_potentials(positions, charges, BASE_CELL)
    result = potentials(method, dtype, charges, BASE_CELL, positions)
    atol = tolerance(method, dtype, reference)
    np.testing.assert_allclose(result, reference, atol=atol, rtol=0)
    wider = make_calculator(method, smearing=0.6)
    pairs, shifts = neighbor_list(positions, BASE_CELL, 4.3)
    vectors = positions[pairs[:, 1]] + shifts @ BASE_CELL - positions[pairs[:, 0]]
    other = wider(
        torch.tensor(charges, dtype=dtype),
        torch.tensor(BASE_CELL, dtype=dtype),
        torch.tensor(positions, dtype=dtype),
        torch.from_numpy(pairs),
        torch.tensor(np.linalg.norm(vectors, axis=1), dtype=dtype),
    )
    np.testing.assert_allclose(other.double().numpy(), result, atol=2 * atol, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_nearly_coincident_atoms(method):
    """Two charges 1e-6 apart: finite potentials and forces, and E − q₁q₂/δ
    equals the energy with the two charges merged into one (up to O(δ))."""
    delta = 1e-6
    charges, positions = random_system(n_atoms=5, seed=2)
    merged = potentials(method, torch.float64, charges, BASE_CELL, positions)
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    split = np.concatenate([charges, [[-0.7]]])
    split[0, 0] += 0.7  # same total charge at the first position
    positions_split = np.concatenate([positions, positions[:1] + delta * direction])
    values = potentials(method, torch.float64, split, BASE_CELL, positions_split)
    assert np.all(np.isfinite(values))
    assert np.abs(values).max() > 1e5  # the bare 1/δ is there
    energy = float((split * values).sum()) - split[0, 0] * split[-1, 0] / delta
    reference = float((charges * merged).sum())
    assert energy == pytest.approx(reference, abs=1e-4 + ACCURACY[method] * 10)
    # forces by autograd: finite, opposite and of size q₁q₂/δ² on the close pair
    pairs, shifts = neighbor_list(positions_split, BASE_CELL, CUTOFF)
    pairs_t, shifts_t = torch.from_numpy(pairs), torch.from_numpy(shifts)
    cell = torch.tensor(BASE_CELL)
    q = torch.tensor(split)
    r = torch.tensor(positions_split, requires_grad=True)
    vectors = r[pairs_t[:, 1]] + shifts_t @ cell - r[pairs_t[:, 0]]
    result = make_calculator(method)(
        q, cell, r, pairs_t, torch.linalg.norm(vectors, dim=-1)
    )
    (gradient,) = torch.autograd.grad((q * result).sum(), r)
    assert bool(torch.isfinite(gradient).all())
    expected = split[0, 0] * split[-1, 0] / delta**2
    assert float(gradient[-1] @ torch.tensor(direction)) == pytest.approx(
        -expected, rel=1e-6
    )
    assert float((gradient[0] + gradient[-1]).norm()) < 1e-6 * abs(expected)


ANISOTROPIC = np.diag([2.0, 2.0, 40.0])


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", METHODS)
def test_anisotropic_cell(method, dtype):
    """A 2 x 2 x 40 cell: NumPy Ewald on it, and the same lattice written with a
    skewed basis (long vector tilted by 7 and 3 short ones) gives the same."""
    charges, positions = random_system(n_atoms=6, seed=9, cell=ANISOTROPIC)
    reference = ewald_potentials(positions, charges, ANISOTROPIC, smearing=1.0)
    skewed = np.array([[1, 0, 0], [0, 1, 0], [7, 3, 1]]) @ ANISOTROPIC
    reduced, _ = minkowski_reduce(skewed)
    np.testing.assert_allclose(np.abs(reduced), ANISOTROPIC, atol=1e-12)
    atol = tolerance(method, dtype, reference)
    direct = potentials(method, dtype, charges, ANISOTROPIC, positions)
    np.testing.assert_allclose(direct, reference, atol=atol, rtol=0)
    tilted = potentials(method, dtype, charges, skewed, wrap(positions, skewed))
    np.testing.assert_allclose(tilted, reference, atol=atol, rtol=0)
