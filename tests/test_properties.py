"""Property-based tests (hypothesis): symmetries, scaling laws and derivatives.

Random neutral and charged systems (2–6 atoms, one or two charge channels) in
random triclinic cells (edges 3.5–5, angles 65°–115°, randomly oriented) are
checked for Ewald, PME, P3M and the direct (truncated ``1/r``) calculator, in
float64 and float32. The references are the symmetries themselves (translation,
permutation, lattice shifts, rotations, supercells), linearity in the charges and
finite differences of the energy; none is a number produced by the code under test.

What is exact and what is not: every method is exactly (to rounding) invariant
under permutations, lattice shifts, rotations and supercells (the mesh methods
with a supercell mesh scaled like the cell), and linear in the charges. Mesh
methods are translation invariant only up to their discretisation error, except
for translations by a mesh vector, which are exact; both are tested.

Run with ``HYPOTHESIS_PROFILE=slow`` for many more examples (see conftest.py).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import neighbor_list

from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
    testing,
)
from torchpme.lib import MeshInterpolator, get_ns_mesh

SMEARING = 0.5
CUTOFF = 3.6  # real-space tail erfc(CUTOFF / √2σ) ≈ 1e-12
# The k-grid (Ewald: ⌈L/λ⌉ points) and the mesh (2^⌈log₂(2L/h + 1)⌉ points) change
# size at some edge lengths L, where the energy jumps by the truncation error: λ
# and h are chosen so that no "round" L in [3.5, 5] sits on such a jump (h = 0.45
# gives 32 points for all L in (3.375, 6.975)), since finite differences would
# see the jump.
LR_WAVELENGTH = 0.2345  # k-space tail ≈ 1e-12
MESH_SPACING = 0.45
# per-atom potential error of the mesh methods with these settings, against the
# NumPy Ewald sum (measured on such systems: PME ~3e-4, P3M ~2e-5 of the largest
# potential); bounds the effect of a translation by a non-mesh vector
MESH_ERROR = {"pme": 2e-3, "p3m": 2e-4}

METHODS = ["direct", "ewald", "pme", "p3m"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def make_calculator(method, fixed_mesh=None):
    """The calculator of ``method`` with the settings above."""
    if method == "direct":
        return Calculator(CoulombPotential(), full_neighbor_list=True)
    potential = CoulombPotential(smearing=SMEARING)
    if method == "ewald":
        return EwaldCalculator(potential, lr_wavelength=LR_WAVELENGTH)
    if method == "pme":
        return PMECalculator(
            potential, MESH_SPACING, interpolation_nodes=6, fixed_mesh=fixed_mesh
        )
    return P3MCalculator(
        potential, MESH_SPACING, interpolation_nodes=5, fixed_mesh=fixed_mesh
    )


def pairs_any_position(positions, cell, full):
    """Reference neighbour list (tests/reference.py) for unwrapped positions.

    The list is built for positions wrapped into the cell; the integer images
    removed by wrapping are put back into the shifts, so that
    ``r_j + S·A − r_i`` is the pair vector of the actual positions.
    """
    pos = positions.detach().to(torch.float64).numpy()
    box = cell.detach().to(torch.float64).numpy()
    image = np.floor(pos @ np.linalg.inv(box))
    pairs, shifts = neighbor_list(pos - image @ box, box, CUTOFF, full=full)
    shifts = shifts - image[pairs[:, 1]] + image[pairs[:, 0]]
    return torch.from_numpy(pairs), torch.from_numpy(shifts)


def distances(positions, cell, pairs, shifts):
    """Differentiable pair distances ``‖r_j + S·A − r_i‖``."""
    vectors = (
        positions[pairs[:, 1]]
        + shifts.to(positions.dtype) @ cell
        - positions[pairs[:, 0]]
    )
    return torch.linalg.norm(vectors, dim=-1)


def system_function(calculator):
    """``fn(charges, cell, positions) -> (N, C)`` with a fresh neighbour list."""
    full = calculator.full_neighbor_list

    def fn(charges, cell, positions):
        pairs, shifts = pairs_any_position(positions, cell, full)
        return calculator(
            charges, cell, positions, pairs, distances(positions, cell, pairs, shifts)
        )

    return fn


def frozen_function(calculator, cell, positions):
    """Like :func:`system_function` with the neighbour list of one configuration
    kept fixed (pairs and images), so the result is smooth under small moves."""
    pairs, shifts = pairs_any_position(positions, cell, calculator.full_neighbor_list)

    def fn(charges, cell, positions):
        return calculator(
            charges, cell, positions, pairs, distances(positions, cell, pairs, shifts)
        )

    return fn


def cell_from_parameters(lengths, angles_degrees):
    """Lower-triangular cell of given edge lengths and angles (α, β, γ)."""
    a, b, c = lengths
    alpha, beta, gamma = np.radians(angles_degrees)
    cx = c * math.cos(beta)
    cy = c * (math.cos(alpha) - math.cos(beta) * math.cos(gamma)) / math.sin(gamma)
    return np.array(
        [
            [a, 0.0, 0.0],
            [b * math.cos(gamma), b * math.sin(gamma), 0.0],
            [cx, cy, math.sqrt(c * c - cx * cx - cy * cy)],
        ]
    )


def min_image_distance(positions, cell):
    """Shortest distance between two atoms, or an atom and its image."""
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    images = shifts @ cell
    vectors = positions[None, :, None, :] - positions[:, None, None, :] + images
    d = np.linalg.norm(vectors, axis=-1)
    n = len(positions)
    d[np.arange(n), np.arange(n), np.all(shifts == 0, axis=1).argmax()] = np.inf
    return d.min()


@st.composite
def systems(draw, neutral=None):
    """(charges (N, C), cell, positions) as float64 NumPy arrays."""
    lengths = [draw(st.floats(3.5, 5.0)) for _ in range(3)]
    angles = [draw(st.floats(65.0, 115.0)) for _ in range(3)]
    n_atoms = draw(st.integers(2, 6))
    channels = draw(st.integers(1, 2))
    if neutral is None:
        neutral = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # angles >= 65° keep the cell volume above 0.57 a·b·c
    cell = cell_from_parameters(lengths, angles)
    rotation = testing.random_rotation(
        generator=torch.Generator().manual_seed(int(rng.integers(2**31)))
    ).numpy()
    cell = cell @ rotation.T
    positions = rng.uniform(0.0, 1.0, size=(n_atoms, 3)) @ cell
    assume(min_image_distance(positions, cell) > MIN_DISTANCE)
    charges = rng.uniform(-2.0, 2.0, size=(n_atoms, channels))
    if neutral:
        charges -= charges.mean(axis=0)
    assume(np.abs(charges).max() > 0.1)
    return charges, cell, positions


def as_torch(system, dtype):
    return [torch.tensor(array, dtype=dtype) for array in system]


MIN_DISTANCE = 0.7  # between atoms and images, see systems()


def exact_tolerance(dtype, charges):
    """Rounding tolerance, scaled by a bound on the potentials' size."""
    scale = max(1.0, float(charges.abs().sum()) / MIN_DISTANCE)
    return testing.tolerance(dtype, scale)


parametrize_all = (
    pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES)),
    pytest.mark.parametrize("method", METHODS),
)


def for_all(test):
    for mark in parametrize_all:
        test = mark(test)
    return test


@for_all
@given(
    system=systems(), translation=st.lists(st.floats(-10, 10), min_size=3, max_size=3)
)
def test_translation_invariance(method, dtype, system, translation):
    charges, cell, positions = as_torch(system, dtype)
    fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    if method in MESH_ERROR:
        # a general translation moves atoms relative to the mesh
        scale = float(fn(charges, cell, positions).abs().max())
        tol = {"atol": MESH_ERROR[method] * max(scale, 1.0), "rtol": 0.0}
    translation = torch.tensor(translation, dtype=dtype)
    testing.check_translation_invariance(
        fn, charges, cell, positions, translation, **tol
    )


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("method", ["pme", "p3m"])
@given(system=systems(), steps=st.lists(st.integers(-40, 40), min_size=3, max_size=3))
def test_translation_by_mesh_vectors_is_exact(method, dtype, system, steps):
    """Moving every atom by whole mesh cells only relabels the mesh nodes."""
    charges, cell, positions = as_torch(system, dtype)
    ns = get_ns_mesh(cell, MESH_SPACING)
    fn = system_function(make_calculator(method))
    translation = (torch.tensor(steps, dtype=dtype) / ns.to(dtype)) @ cell
    tol = exact_tolerance(dtype, charges)
    testing.check_translation_invariance(
        fn, charges, cell, positions, translation, **tol
    )


@for_all
@given(system=systems(), data=st.data())
def test_permutation_equivariance(method, dtype, system, data):
    charges, cell, positions = as_torch(system, dtype)
    order = data.draw(st.permutations(list(range(len(positions)))))
    fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    testing.check_permutation_equivariance(
        fn, charges, cell, positions, torch.tensor(order), **tol
    )


@for_all
@given(system=systems(), data=st.data())
def test_lattice_shift_invariance(method, dtype, system, data):
    charges, cell, positions = as_torch(system, dtype)
    shifts = data.draw(
        st.lists(
            st.lists(st.integers(-3, 3), min_size=3, max_size=3),
            min_size=len(positions),
            max_size=len(positions),
        )
    )
    fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    testing.check_lattice_shift_invariance(
        fn, charges, cell, positions, torch.tensor(shifts), **tol
    )


@for_all
@given(system=systems(), seed=st.integers(0, 2**31 - 1), improper=st.booleans())
def test_rotation_invariance_and_force_equivariance(
    method, dtype, system, seed, improper
):
    charges, cell, positions = as_torch(system, dtype)
    rotation = testing.random_rotation(
        dtype, torch.Generator().manual_seed(seed), improper=improper
    )
    fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    testing.check_rotation_invariance(fn, charges, cell, positions, rotation, **tol)


@for_all
@given(system=systems(), axis=st.integers(0, 2))
def test_supercell_extensivity(method, dtype, system, axis):
    """A 2x1x1 (or 1x2x1, 1x1x2) supercell: same per-atom potentials, twice E."""
    charges, cell, positions = as_torch(system, dtype)
    repeats = [1, 1, 1]
    repeats[axis] = 2
    if method in MESH_ERROR:
        ns = get_ns_mesh(cell, MESH_SPACING).tolist()
        big_ns = [n * r for n, r in zip(ns, repeats, strict=True)]
        fn = system_function(make_calculator(method, fixed_mesh=ns))
        big_fn = system_function(make_calculator(method, fixed_mesh=big_ns))
    else:
        fn = big_fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    testing.check_supercell_extensivity(
        fn, charges, cell, positions, repeats, supercell_fn=big_fn, **tol
    )


@for_all
@given(system=systems(), factor=st.floats(-3.0, 3.0))
def test_charge_scaling_and_channel_superposition(method, dtype, system, factor):
    charges, cell, positions = as_torch(system, dtype)
    fn = system_function(make_calculator(method))
    tol = exact_tolerance(dtype, charges)
    testing.check_charge_scaling(fn, charges, cell, positions, factor, **tol)
    testing.check_channel_superposition(fn, charges, cell, positions, **tol)


# Finite differences are taken in float64 and compared with the automatic
# derivatives in either dtype. PME's Lagrange weights have kinks at mesh-cell
# boundaries (the interpolant is only continuous), so its step is tiny.
FD_STEP = {"direct": 1e-5, "ewald": 1e-5, "pme": 1e-7, "p3m": 1e-5}
FD_TOLERANCE = {torch.float64: 1e-7, torch.float32: 2e-4}


@for_all
@given(system=systems(), seed=st.integers(0, 2**31 - 1))
def test_forces_are_minus_energy_gradient(method, dtype, system, seed):
    charges, cell, positions = as_torch(system, torch.float64)
    calculator = make_calculator(method)
    fn = frozen_function(calculator, cell, positions)
    direction = torch.randn(
        positions.shape,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(seed),
    )
    slope = testing.directional_derivative(
        lambda r: testing.energy(fn, charges, cell, r),
        positions,
        direction,
        FD_STEP[method],
        order=2,
    )
    force = testing.forces(fn, charges.to(dtype), cell.to(dtype), positions.to(dtype))
    scale = float(direction.norm() * force.norm()) + 1.0
    testing.assert_close(
        -(force.double() * direction).sum(),
        slope,
        atol=FD_TOLERANCE[dtype] * scale,
        rtol=0.0,
        what="-F·d vs finite-difference dE/dt along d",
    )


@for_all
@given(system=systems(), seed=st.integers(0, 2**31 - 1))
def test_stress_is_strain_derivative(method, dtype, system, seed):
    """``∂E/∂ε`` by autograd through cell and positions vs. a strained energy."""
    charges, cell, positions = as_torch(system, torch.float64)
    calculator = make_calculator(method)
    fn = frozen_function(calculator, cell, positions)
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    direction = direction + direction.T

    def strained(t):
        deformation = torch.eye(3, dtype=torch.float64) + t * direction
        return testing.energy(fn, charges, cell @ deformation, positions @ deformation)

    slope = testing.directional_derivative(
        strained, torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0), 1e-5, 2
    )
    derivative = testing.strain_derivative(
        lambda c, r: testing.energy(fn, charges.to(dtype), c, r),
        cell.to(dtype),
        positions.to(dtype),
    )
    scale = float(derivative.double().norm() * direction.norm()) + 1.0
    testing.assert_close(
        (derivative.double() * direction).sum(),
        slope,
        atol=FD_TOLERANCE[dtype] * scale,
        rtol=0.0,
        what="autograd ∂E/∂ε : D vs finite-difference dE/dt along strain D",
    )
    # a rotation-invariant energy has a symmetric strain derivative
    testing.assert_close(
        derivative,
        derivative.T,
        atol=FD_TOLERANCE[dtype] * scale,
        rtol=0.0,
        what="strain derivative vs its transpose",
    )


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize(
    ("method", "nodes"),
    [("Lagrange", n) for n in range(3, 8)] + [("P3M", n) for n in range(1, 6)],
)
@given(system=systems(), sizes=st.lists(st.integers(1, 12), min_size=3, max_size=3))
def test_spread_gather_adjoint(method, nodes, dtype, system, sizes):
    """⟨spread(q), m⟩ = ⟨q, gather(m)⟩ for any mesh, including meshes smaller than
    the stencil (nodes wrap around and accumulate)."""
    charges, cell, positions = as_torch(system, dtype)
    interpolator = MeshInterpolator(cell, torch.tensor(sizes), nodes, method)
    interpolator.compute_weights(positions)
    mesh = torch.randn(
        (charges.shape[1], *sizes),
        dtype=dtype,
        generator=torch.Generator().manual_seed(0),
    )
    testing.check_spread_gather_adjoint(
        interpolator.points_to_mesh, interpolator.mesh_to_points, charges, mesh
    )


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_of_potentials(method):
    """First derivatives in charges, cell and positions (float64 finite
    differences of the potentials, neighbour list kept fixed)."""
    rng = np.random.default_rng(3)
    cell = torch.tensor(cell_from_parameters([3.6, 3.9, 4.2], [80.0, 100.0, 95.0]))
    positions = torch.tensor(rng.uniform(0.0, 1.0, size=(3, 3))) @ cell
    charges = torch.tensor(rng.uniform(-1.0, 1.0, size=(3, 2)))
    calculator = make_calculator(method)
    fn = frozen_function(calculator, cell, positions)
    testing.gradcheck(fn, (charges, cell, positions))


def test_testing_all_lists_exactly_the_public_names():
    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_")
        and getattr(value, "__module__", testing.__name__).startswith(testing.__name__)
        and (callable(value) or name.isupper())
        and name not in {"SystemFunction"}
    }
    assert set(testing.__all__) == public
    assert all(hasattr(testing, name) for name in testing.__all__)
