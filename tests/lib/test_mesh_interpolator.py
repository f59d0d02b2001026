"""Tests of ``torchpme.lib.MeshInterpolator`` against the spec (API.md §3.3).

References: Lagrange basis polynomials and centred cardinal B-splines written from
their definitions in ``_reference.py``, a dense NumPy spread/gather loop, analytic
identities (partition of unity, polynomial reproduction, B-spline moments) and the
example weights printed in the spec.
"""

import numpy as np
import pytest
import torch

from torchpme.lib import MeshInterpolator

from ._reference import (
    TRICLINIC_CELL,
    bspline,
    bspline_by_convolution,
    dense_gather,
    dense_spread,
    reference_plan,
    weights_1d,
)

METHODS = [("Lagrange", n) for n in range(3, 8)] + [("P3M", n) for n in range(1, 6)]
METHOD_IDS = [f"{m}-{n}" for m, n in METHODS]
SKEWED_CELL = np.array([[3.0, 0.4, -0.2], [1.1, 2.7, 0.3], [-0.6, 0.9, 3.3]])


def _t(array, dtype=torch.float64):
    return torch.tensor(np.asarray(array), dtype=dtype)


def _random_positions(cell, n_atoms, seed, spread=1.0):
    """Random Cartesian positions, fractional coordinates in [-spread+1, spread)."""
    rng = np.random.default_rng(seed)
    frac = rng.uniform(1.0 - spread, spread, size=(n_atoms, 3))
    return frac @ np.asarray(cell)


def _interpolator(cell, ns, method, n, positions, dtype=torch.float64):
    interpolator = MeshInterpolator(_t(cell, dtype), torch.tensor(ns), n, method)
    interpolator.compute_weights(_t(positions, dtype))
    return interpolator


# -- construction and validation -----------------------------------------------------


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_valid_construction(method, n):
    interpolator = MeshInterpolator(
        torch.eye(3, dtype=torch.float64), torch.tensor([4, 4, 4]), n, method
    )
    assert interpolator.method == method
    assert interpolator.interpolation_nodes == n


@pytest.mark.parametrize("method", ["lagrange", "p3m", "PME", "", "Spline"])
def test_invalid_method(method):
    with pytest.raises(ValueError) as info:
        MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 3, method)
    assert "Lagrange" in str(info.value)
    assert "P3M" in str(info.value)


@pytest.mark.parametrize(
    ("method", "n"),
    [
        pytest.param("Lagrange", 2, id="Lagrange-2"),
        pytest.param("Lagrange", 8, id="Lagrange-8"),
        pytest.param("Lagrange", 1, id="Lagrange-1"),
        pytest.param("P3M", 0, id="P3M-0"),
        pytest.param("P3M", 6, id="P3M-6"),
        pytest.param("P3M", 7, id="P3M-7"),
    ],
)
def test_invalid_node_count(method, n):
    with pytest.raises(ValueError, match="interpolation_nodes"):
        MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), n, method)


def test_method_checked_before_node_count():
    with pytest.raises(ValueError) as info:
        MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 99, "bogus")
    assert "bogus" in str(info.value)
    assert "99" not in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [(3,), (2, 3), (3, 2), (1, 3, 3), (4, 4)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_bad_cell_shape(shape):
    with pytest.raises(ValueError, match="cell"):
        MeshInterpolator(torch.ones(shape), torch.tensor([4, 4, 4]), 3, "Lagrange")
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 3, "P3M")
    with pytest.raises(ValueError, match="cell"):
        interpolator.update(cell=torch.ones(shape))


@pytest.mark.parametrize(
    "ns", [[4, 4], [4, 4, 4, 4], [[4, 4, 4]], [[4], [4], [4]]], ids=str
)
def test_bad_ns_mesh_shape(ns):
    with pytest.raises(ValueError, match="ns_mesh"):
        MeshInterpolator(torch.eye(3), torch.tensor(ns), 3, "Lagrange")
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 3, "P3M")
    with pytest.raises(ValueError, match="ns_mesh"):
        interpolator.update(ns_mesh=torch.tensor(ns))


@pytest.mark.parametrize(
    "shape", [(5, 2), (5, 4), (3,), (2, 5, 3)], ids=lambda s: "x".join(map(str, s))
)
def test_bad_positions_shape(shape):
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 4, "P3M")
    with pytest.raises(ValueError, match="positions"):
        interpolator.compute_weights(torch.rand(shape))


@pytest.mark.parametrize(
    "shape", [(5,), (5, 1, 1), (1, 5, 1, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_bad_particle_weights_dim(shape):
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 4, "P3M")
    interpolator.compute_weights(torch.rand(5, 3))
    with pytest.raises(ValueError, match="particle_weights"):
        interpolator.points_to_mesh(torch.ones(shape))


@pytest.mark.parametrize(
    "shape", [(4, 4, 4), (1, 1, 4, 4, 4), (64,)], ids=lambda s: "x".join(map(str, s))
)
def test_bad_mesh_dim(shape):
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 4, "P3M")
    interpolator.compute_weights(torch.rand(5, 3))
    with pytest.raises(ValueError, match="mesh_vals"):
        interpolator.mesh_to_points(torch.ones(shape))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_device_mismatch():
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="ns_mesh"):
        MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4], device=cuda), 3, "P3M")
    interpolator = MeshInterpolator(torch.eye(3), torch.tensor([4, 4, 4]), 3, "P3M")
    with pytest.raises(ValueError, match="positions"):
        interpolator.compute_weights(torch.rand(5, 3, device=cuda))
    interpolator.compute_weights(torch.rand(5, 3))
    with pytest.raises(ValueError, match="particle_weights"):
        interpolator.points_to_mesh(torch.ones(5, 1, device=cuda))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
@pytest.mark.parametrize(("method", "n"), [("Lagrange", 4), ("P3M", 3)], ids=str)
def test_cuda_matches_cpu(method, n):
    positions = _random_positions(TRICLINIC_CELL, 7, seed=3)
    q = np.random.default_rng(1).normal(size=(7, 2))
    mesh_ref = dense_spread(positions, TRICLINIC_CELL, [5, 6, 7], n, method, q)
    cuda = torch.device("cuda")
    interpolator = MeshInterpolator(
        _t(TRICLINIC_CELL).to(cuda), torch.tensor([5, 6, 7], device=cuda), n, method
    )
    interpolator.compute_weights(_t(positions).to(cuda))
    mesh = interpolator.points_to_mesh(_t(q).to(cuda))
    assert mesh.device.type == "cuda"
    np.testing.assert_allclose(mesh.cpu().numpy(), mesh_ref, atol=1e-12)


# -- weights -------------------------------------------------------------------------


def test_reference_bspline_is_a_box_convolution():
    # the explicit-sum B-spline used below agrees with the convolution definition
    t = np.linspace(-3.0, 3.0, 61) + 0.0123
    for n in range(1, 6):
        np.testing.assert_allclose(
            bspline(t, n), bspline_by_convolution(t, n), atol=1e-3, err_msg=f"{n}"
        )


@pytest.mark.parametrize(
    ("method", "n", "axis", "expected"),
    [
        pytest.param(
            "Lagrange",
            4,
            0,
            [
                -0.026345808870598997,
                0.9465213772290808,
                0.09488356104252404,
                -0.015059129401005945,
            ],
            id="Lagrange-4-axis0",
        ),
        pytest.param(
            "P3M", 3, 2, [0.405, 0.59, 0.0050000000000000044], id="P3M-3-axis2"
        ),
    ],
)
def test_spec_example_weights(method, n, axis, expected):
    interpolator = _interpolator(
        TRICLINIC_CELL, [8, 8, 8], method, n, [[0.1, 0.2, 0.3]]
    )
    weights = interpolator.interpolation_weights
    assert weights.shape == (n, 1, 3)
    np.testing.assert_allclose(weights[:, 0, axis].numpy(), expected, atol=1e-14)


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_weights_match_definition(method, n):
    ns = [5, 6, 7]
    positions = _random_positions(SKEWED_CELL, 40, seed=n, spread=2.0)
    interpolator = _interpolator(SKEWED_CELL, ns, method, n, positions)
    _, x = reference_plan(positions, SKEWED_CELL, ns, n)
    expected = weights_1d(x, n, method)
    weights = interpolator.interpolation_weights
    assert weights.shape == (n, 40, 3)
    assert weights.dtype == torch.float64
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_partition_of_unity(method, n):
    positions = _random_positions(SKEWED_CELL, 200, seed=10 + n, spread=3.0)
    interpolator = _interpolator(SKEWED_CELL, [6, 5, 4], method, n, positions)
    total = interpolator.interpolation_weights.sum(dim=0)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)

    q = torch.tensor(np.random.default_rng(n).normal(size=(200, 3)))
    mesh = interpolator.points_to_mesh(q)
    torch.testing.assert_close(
        mesh.sum(dim=(1, 2, 3)), q.sum(dim=0), atol=1e-11, rtol=0
    )


@pytest.mark.parametrize("n", range(3, 8), ids=lambda n: f"Lagrange-{n}")
def test_lagrange_reproduces_polynomials(n):
    # a polynomial of degree n-1 per axis in the scaled fractional coordinate,
    # sampled on the nodes, is reproduced exactly by the interpolation (atoms are
    # kept far enough from the mesh edge that the stencil does not wrap)
    ns = [16, 14, 15]
    rng = np.random.default_rng(n)
    u = rng.uniform(4.0, 10.0, size=(12, 3))
    positions = (u / np.array(ns)) @ SKEWED_CELL
    coeffs = rng.normal(size=(3, n))

    def poly(values):
        # product over axes of 1-D polynomials of degree n-1 in (u - 7)/7
        out = np.ones(values.shape[:-1])
        for d in range(3):
            out = out * np.polyval(coeffs[d], (values[..., d] - 7.0) / 7.0)
        return out

    nodes = np.stack(np.meshgrid(*[np.arange(s) for s in ns], indexing="ij"), -1)
    mesh = torch.tensor(poly(nodes.astype(np.float64)))[None]
    interpolator = _interpolator(SKEWED_CELL, ns, "Lagrange", n, positions)
    values = interpolator.mesh_to_points(mesh)[:, 0].numpy()
    np.testing.assert_allclose(values, poly(u), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", range(1, 6), ids=lambda n: f"P3M-{n}")
def test_p3m_moments(n):
    # B-spline assignment reproduces constants and (n >= 2) linear functions; for
    # n >= 3 (transform zeros of order n >= 3 at the aliases, so Poisson summation
    # is exact up to second order) the second moment is u² + n/12, the variance of a
    # sum of n uniform variables
    ns = [16, 14, 15]
    rng = np.random.default_rng(n)
    u = rng.uniform(4.0, 10.0, size=(12, 3))
    positions = (u / np.array(ns)) @ SKEWED_CELL
    nodes = np.stack(np.meshgrid(*[np.arange(s) for s in ns], indexing="ij"), -1)
    nodes = nodes.astype(np.float64)
    mesh = torch.tensor(
        np.stack(
            [
                np.ones(ns),
                nodes[..., 0],
                nodes[..., 1] + 2.0 * nodes[..., 2],
                nodes[..., 2] ** 2,
                nodes[..., 0] * nodes[..., 1],
            ]
        )
    )
    interpolator = _interpolator(SKEWED_CELL, ns, "P3M", n, positions)
    values = interpolator.mesh_to_points(mesh).numpy()
    np.testing.assert_allclose(values[:, 0], 1.0, atol=1e-12)
    if n >= 2:
        np.testing.assert_allclose(values[:, 1], u[:, 0], rtol=1e-12)
        np.testing.assert_allclose(values[:, 2], u[:, 1] + 2.0 * u[:, 2], rtol=1e-12)
        np.testing.assert_allclose(values[:, 4], u[:, 0] * u[:, 1], rtol=1e-12)
    if n >= 3:
        np.testing.assert_allclose(values[:, 3], u[:, 2] ** 2 + n / 12.0, rtol=1e-12)


# -- spread and gather ---------------------------------------------------------------

MESHES = {
    "567": [5, 6, 7],
    "wrap-234": [2, 3, 4],
    "wrap-123": [1, 2, 3],
}


@pytest.mark.parametrize("ns", list(MESHES.values()), ids=list(MESHES))
@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_spread_and_gather_match_dense_reference(method, n, ns):
    rng = np.random.default_rng(7)
    positions = _random_positions(TRICLINIC_CELL, 5, seed=n, spread=2.0)
    q = rng.normal(size=(5, 2))
    mesh_in = rng.normal(size=(2, *ns))
    interpolator = _interpolator(TRICLINIC_CELL, ns, method, n, positions)

    mesh = interpolator.points_to_mesh(_t(q))
    assert mesh.shape == (2, *ns)
    expected = dense_spread(positions, TRICLINIC_CELL, ns, n, method, q)
    np.testing.assert_allclose(mesh.numpy(), expected, rtol=1e-11, atol=1e-12)

    values = interpolator.mesh_to_points(_t(mesh_in))
    assert values.shape == (5, 2)
    expected = dense_gather(positions, TRICLINIC_CELL, ns, n, method, mesh_in)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("ns", list(MESHES.values()), ids=list(MESHES))
@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_spread_gather_adjoint(method, n, ns):
    rng = np.random.default_rng(n)
    positions = _random_positions(SKEWED_CELL, 6, seed=100 + n, spread=2.0)
    q = torch.tensor(rng.normal(size=(6, 3)))
    m = torch.tensor(rng.normal(size=(3, *ns)))
    interpolator = _interpolator(SKEWED_CELL, ns, method, n, positions)
    lhs = torch.sum(interpolator.points_to_mesh(q) * m)
    rhs = torch.sum(q * interpolator.mesh_to_points(m))
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    # and the value is not trivially zero
    assert abs(float(lhs)) > 1e-6


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_lattice_translation_invariance(method, n):
    ns = [5, 6, 7]
    rng = np.random.default_rng(n)
    positions = _random_positions(TRICLINIC_CELL, 6, seed=n)
    shifts = rng.integers(-3, 4, size=(6, 3)).astype(np.float64)
    shifted = positions + shifts @ TRICLINIC_CELL
    q = _t(rng.normal(size=(6, 2)))
    m = _t(rng.normal(size=(2, *ns)))
    a = _interpolator(TRICLINIC_CELL, ns, method, n, positions)
    b = _interpolator(TRICLINIC_CELL, ns, method, n, shifted)
    torch.testing.assert_close(
        a.points_to_mesh(q), b.points_to_mesh(q), atol=1e-11, rtol=0
    )
    torch.testing.assert_close(
        a.mesh_to_points(m), b.mesh_to_points(m), atol=1e-11, rtol=0
    )


def _axis0_profile(method, n, u0, ns0=10):
    """Spread a unit charge at scaled coordinate ``u0`` along axis 0 of a cubic cell.

    The other coordinates sit on a node (odd n) or a cell midpoint (even n), and the
    mesh is summed over axes 1 and 2, leaving the 1-D weights on the axis-0 nodes.
    """
    cell = 4.0 * np.eye(3)
    other = 3.0 if n % 2 == 1 else 3.5
    positions = np.array([[u0, other, other]]) * 4.0 / np.array([ns0, 8, 8])
    interpolator = _interpolator(cell, [ns0, 8, 8], method, n, positions)
    mesh = interpolator.points_to_mesh(torch.ones(1, 1, dtype=torch.float64))
    return mesh[0].sum(dim=(1, 2)).numpy()


def _profile(first, weights, ns0=10):
    """Weights placed on nodes ``first, first + 1, …`` (periodically wrapped)."""
    expected = np.zeros(ns0)
    np.add.at(expected, np.mod(first + np.arange(len(weights)), ns0), weights)
    return expected


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("u0", [4.2, 4.45, 4.55, 4.8], ids=lambda u: f"u{u}")
def test_centering_convention(method, n, u0):
    # even n: stencil starts at floor(u) - (n/2 - 1), reference at floor(u) + 1/2;
    # odd n: stencil centred on round(u)
    profile = _axis0_profile(method, n, u0)
    if n % 2 == 0:
        base = int(np.floor(u0))
        x = u0 - (base + 0.5)
        first = base - (n // 2 - 1)
    else:
        base = int(np.round(u0))
        x = u0 - base
        first = base - (n - 1) // 2
    expected = _profile(first, weights_1d(np.array(x), n, method))
    np.testing.assert_allclose(profile, expected, atol=1e-13)


@pytest.mark.parametrize("n", [3, 5, 7], ids=lambda n: f"Lagrange-{n}")
@pytest.mark.parametrize(
    ("u0", "centre"),
    [(2.5, 2), (3.5, 4), (4.5, 4), (5.5, 6)],
    ids=["2.5", "3.5", "4.5", "5.5"],
)
def test_odd_rounding_ties_to_even(n, u0, centre):
    # odd-order Lagrange weights jump at half-integers, so the tie rule is visible
    profile = _axis0_profile("Lagrange", n, u0)
    x = u0 - centre
    first = centre - (n - 1) // 2
    expected = _profile(first, weights_1d(np.array(x), n, "Lagrange"))
    np.testing.assert_allclose(profile, expected, atol=1e-13)


def test_points_to_mesh_accumulates_coincident_atoms():
    positions = np.array([[0.3, 1.1, 2.2], [0.3, 1.1, 2.2], [1.7, 0.2, 0.9]])
    q = np.array([[1.0], [2.0], [-0.5]])
    a = _interpolator(TRICLINIC_CELL, [4, 5, 6], "Lagrange", 5, positions)
    b = _interpolator(TRICLINIC_CELL, [4, 5, 6], "Lagrange", 5, positions[1:])
    merged = np.array([[3.0], [-0.5]])
    torch.testing.assert_close(
        a.points_to_mesh(_t(q)), b.points_to_mesh(_t(merged)), atol=1e-13, rtol=0
    )


@pytest.mark.parametrize("n_channels", [1, 3], ids=lambda c: f"C{c}")
def test_output_shapes_channels_first(n_channels):
    positions = _random_positions(TRICLINIC_CELL, 4, seed=0)
    interpolator = _interpolator(TRICLINIC_CELL, [3, 4, 5], "Lagrange", 3, positions)
    q = torch.ones(4, n_channels, dtype=torch.float64)
    q[:, -1] = 2.0
    mesh = interpolator.points_to_mesh(q)
    assert mesh.shape == (n_channels, 3, 4, 5)
    torch.testing.assert_close(mesh.sum(dim=(1, 2, 3)), q.sum(dim=0))
    values = interpolator.mesh_to_points(mesh)
    assert values.shape == (4, n_channels)


# -- get_mesh_xyz, update ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_get_mesh_xyz(dtype):
    ns = [3, 4, 5]
    interpolator = MeshInterpolator(_t(SKEWED_CELL, dtype), torch.tensor(ns), 3, "P3M")
    xyz = interpolator.get_mesh_xyz()
    assert xyz.shape == (3, 4, 5, 3)
    assert xyz.dtype == dtype
    for i, j, k in [(0, 0, 0), (1, 2, 3), (2, 3, 4), (2, 0, 1)]:
        expected = np.array([i / 3, j / 4, k / 5]) @ SKEWED_CELL
        tol = 1e-6 if dtype == torch.float32 else 1e-14
        np.testing.assert_allclose(xyz[i, j, k].double().numpy(), expected, atol=tol)


def test_mesh_xyz_nodes_are_at_integer_scaled_coordinates():
    # an atom placed exactly on a node with odd P3M order gets weight 1 on that node
    ns = [3, 4, 5]
    interpolator = MeshInterpolator(_t(SKEWED_CELL), torch.tensor(ns), 1, "P3M")
    xyz = interpolator.get_mesh_xyz()
    positions = xyz[1, 2, 3][None] + 1e-9
    interpolator.compute_weights(positions)
    mesh = interpolator.points_to_mesh(torch.ones(1, 1, dtype=torch.float64))
    assert mesh[0, 1, 2, 3] == 1.0
    assert mesh.sum() == 1.0


def test_update_matches_fresh_instance():
    positions = _random_positions(SKEWED_CELL, 5, seed=4)
    q = _t(np.random.default_rng(0).normal(size=(5, 2)))
    interpolator = MeshInterpolator(
        torch.eye(3, dtype=torch.float64), torch.tensor([2, 2, 2]), 4, "Lagrange"
    )
    interpolator.update(cell=_t(SKEWED_CELL))
    interpolator.update(ns_mesh=torch.tensor([5, 6, 7]))
    interpolator.compute_weights(_t(positions))
    fresh = _interpolator(SKEWED_CELL, [5, 6, 7], "Lagrange", 4, positions)
    mesh = interpolator.points_to_mesh(q)
    assert mesh.shape == (2, 5, 6, 7)
    torch.testing.assert_close(mesh, fresh.points_to_mesh(q), rtol=0, atol=0)
    expected = dense_spread(positions, SKEWED_CELL, [5, 6, 7], 4, "Lagrange", q.numpy())
    np.testing.assert_allclose(mesh.numpy(), expected, atol=1e-12)
    # update() with no argument keeps the state
    interpolator.update()
    interpolator.compute_weights(_t(positions))
    torch.testing.assert_close(interpolator.points_to_mesh(q), mesh, rtol=0, atol=0)


# -- dtypes --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("method", "n"), [("Lagrange", 4), ("Lagrange", 5), ("P3M", 2), ("P3M", 3)], ids=str
)
def test_outputs_follow_input_dtype(method, n, dtype):
    ns = [5, 6, 7]
    rng = np.random.default_rng(2)
    positions = _random_positions(TRICLINIC_CELL, 5, seed=3)
    q = rng.normal(size=(5, 2))
    m = rng.normal(size=(2, *ns))
    interpolator = _interpolator(TRICLINIC_CELL, ns, method, n, positions, dtype)
    assert interpolator.interpolation_weights.dtype == dtype
    mesh = interpolator.points_to_mesh(_t(q, dtype))
    values = interpolator.mesh_to_points(_t(m, dtype))
    assert mesh.dtype == dtype
    assert values.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    expected = dense_spread(positions, TRICLINIC_CELL, ns, n, method, q)
    np.testing.assert_allclose(mesh.double().numpy(), expected, atol=tol)
    expected = dense_gather(positions, TRICLINIC_CELL, ns, n, method, m)
    np.testing.assert_allclose(values.double().numpy(), expected, atol=tol)


@pytest.mark.parametrize(("method", "n"), METHODS, ids=METHOD_IDS)
def test_total_charge_has_no_gradient_in_float32(method, n):
    # the spread total is Σ q (partition of unity) whatever the positions and cell,
    # so its gradients vanish; in float32 they must stay at rounding level even
    # for atoms many cells away, whose positions multiply the cell gradient
    positions = _random_positions(SKEWED_CELL, 300, seed=n, spread=12.0)
    cell = _t(SKEWED_CELL, torch.float32).requires_grad_(True)
    positions = _t(positions, torch.float32).requires_grad_(True)
    interpolator = MeshInterpolator(cell, torch.tensor([16, 15, 12]), n, method)
    interpolator.compute_weights(positions)
    mesh = interpolator.points_to_mesh(torch.ones(300, 1))
    for gradient in torch.autograd.grad(mesh.sum(), [positions, cell]):
        assert float(gradient.abs().max()) < 1e-6


def test_update_accepts_meta_tensors():
    # meta tensors carry shapes, not values: tracing a model on the meta device
    # must not read the mesh size
    cell = torch.eye(3, dtype=torch.float64, device="meta")
    ns_mesh = torch.tensor([4, 5, 6], device="meta")
    interpolator = MeshInterpolator(
        torch.eye(3, dtype=torch.float64), torch.tensor([4, 5, 6]), 4, "Lagrange"
    )
    interpolator.update(cell, ns_mesh)
    interpolator.compute_weights(torch.zeros(3, 3, dtype=torch.float64, device="meta"))
    mesh = interpolator.points_to_mesh(
        torch.zeros(3, 2, dtype=torch.float64, device="meta")
    )
    assert mesh.device.type == "meta"
    assert mesh.shape == (2, 4, 5, 6)
    fresh = MeshInterpolator(cell, ns_mesh, 3, "P3M")
    assert fresh.ns_mesh.device.type == "meta"
