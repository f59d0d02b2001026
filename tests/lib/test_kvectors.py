"""Tests of ``torchpme.lib.kvectors`` against the spec (API.md §3.2).

References are NumPy float64 computations of ``k = m_0 b_0 + m_1 b_1 + m_2 b_2``
with ``B = 2π inv(cell)ᵀ`` and the ``fftfreq``/``rfftfreq`` integer layouts.
"""

import math

import numpy as np
import pytest
import torch

from torchpme.lib import (
    compute_batched_kvectors,
    generate_kvectors_for_ewald,
    generate_kvectors_for_mesh,
    get_ns_mesh,
)

from ._reference import TRICLINIC_CELL, kvectors_ewald, kvectors_mesh

CELLS = {
    "cubic": 3.0 * np.eye(3),
    "orthorhombic": np.diag([2.0, 3.5, 4.25]),
    "triclinic": TRICLINIC_CELL,
    "skewed": np.array([[3.0, 0.4, -0.2], [1.1, 2.7, 0.3], [-0.6, 0.9, 3.3]]),
}
SIZES = {
    "444": [4, 4, 4],
    "567": [5, 6, 7],
    "123": [1, 2, 3],
    "982": [9, 8, 2],
}


def _t(array, dtype=torch.float64):
    return torch.tensor(np.asarray(array), dtype=dtype)


# -- get_ns_mesh ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "spacing", "expected"),
    [
        pytest.param(10.0 * np.eye(3), 1.0, [32, 32, 32], id="10I-h1"),
        pytest.param(np.diag([3.0, 4.0, 5.0]), 0.5, [16, 32, 32], id="diag345-h0.5"),
        # 2·1.5/1 + 1 = 4 exactly: powers of two are kept
        pytest.param(1.5 * np.eye(3), 1.0, [4, 4, 4], id="exact-power-of-two"),
        # 2·L/h + 1 = 3, 5, 9 -> 4, 8, 16
        pytest.param(np.diag([1.0, 2.0, 4.0]), 1.0, [4, 8, 16], id="diag124-h1"),
    ],
)
def test_get_ns_mesh_examples(cell, spacing, expected):
    ns = get_ns_mesh(_t(cell), spacing)
    assert ns.dtype == torch.int64
    assert ns.shape == (3,)
    assert ns.tolist() == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_get_ns_mesh_power_of_two_rule(dtype):
    rng = np.random.default_rng(0)
    for _ in range(50):
        cell = rng.normal(size=(3, 3)) * rng.uniform(0.5, 20.0)
        spacing = float(rng.uniform(0.05, 3.0))
        target = 2.0 * np.linalg.norm(cell, axis=1) / spacing + 1.0
        ns = get_ns_mesh(_t(cell, dtype), spacing)
        assert ns.dtype == torch.int64
        for n, y in zip(ns.tolist(), target):
            assert n > 0 and (n & (n - 1)) == 0, f"{n} is not a power of two"
            # smallest power of two not smaller than y
            assert n >= y * (1 - 1e-6)
            assert n / 2 < y * (1 + 1e-6)


def test_get_ns_mesh_triclinic_uses_row_norms():
    # rows have norms 5, 5, 13: a column-norm implementation would differ
    cell = np.array([[3.0, 4.0, 0.0], [0.0, 3.0, 4.0], [12.0, 0.0, 5.0]])
    ns = get_ns_mesh(_t(cell), 1.0)
    assert ns.tolist() == [16, 16, 32]


# -- generate_kvectors_for_mesh ------------------------------------------------------


@pytest.mark.parametrize("ns", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("cell", list(CELLS.values()), ids=list(CELLS))
def test_kvectors_for_mesh_reference(cell, ns):
    kvec = generate_kvectors_for_mesh(_t(cell), torch.tensor(ns))
    reference, _ = kvectors_mesh(cell, ns)
    assert kvec.shape == (ns[0], ns[1], ns[2] // 2 + 1, 3)
    assert kvec.dtype == torch.float64
    np.testing.assert_allclose(kvec.numpy(), reference, rtol=1e-13, atol=1e-13)
    assert torch.all(kvec[0, 0, 0] == 0.0)


@pytest.mark.parametrize("cell", list(CELLS.values()), ids=list(CELLS))
def test_kvectors_for_mesh_dual_to_cell(cell):
    # k(m) · a_d = 2π m_d for the fftfreq / rfftfreq integer layouts
    ns = [5, 6, 7]
    kvec = generate_kvectors_for_mesh(_t(cell), torch.tensor(ns)).numpy()
    m = kvec @ np.asarray(cell).T / (2 * np.pi)
    expected = np.stack(
        np.meshgrid(
            np.fft.fftfreq(5) * 5,
            np.fft.fftfreq(6) * 6,
            np.fft.rfftfreq(7) * 7,
            indexing="ij",
        ),
        axis=-1,
    )
    np.testing.assert_allclose(m, expected, atol=1e-12)


@pytest.mark.parametrize(
    "m", [[1, 2, 1], [-2, 1, 3], [0, -3, 2], [2, -1, 1]], ids=lambda m: str(m)
)
def test_kvectors_for_mesh_match_rfftn_layout(m):
    # a plane wave cos(k0·r) on the mesh transforms to a peak at the position
    # whose k-vector is k0 (m[2] > 0, so its conjugate is not in the half layout)
    cell = CELLS["skewed"]
    ns = [6, 7, 8]
    b = 2 * np.pi * np.linalg.inv(cell).T
    k0 = np.asarray(m, dtype=np.float64) @ b
    frac = np.stack(
        np.meshgrid(*[np.arange(n) / n for n in ns], indexing="ij"), axis=-1
    )
    wave = np.cos(frac @ cell @ k0)
    spectrum = torch.fft.rfftn(torch.tensor(wave)).abs()
    peak = np.unravel_index(int(torch.argmax(spectrum)), spectrum.shape)
    kvec = generate_kvectors_for_mesh(_t(cell), torch.tensor(ns))
    np.testing.assert_allclose(kvec[peak].numpy(), k0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_kvectors_dtype_follows_cell(dtype):
    cell = _t(TRICLINIC_CELL, dtype)
    ns = torch.tensor([4, 5, 6])
    mesh = generate_kvectors_for_mesh(cell, ns)
    ewald = generate_kvectors_for_ewald(cell, ns)
    assert mesh.dtype == dtype
    assert ewald.dtype == dtype
    reference, _ = kvectors_mesh(TRICLINIC_CELL, [4, 5, 6])
    np.testing.assert_allclose(mesh.double().numpy(), reference, rtol=1e-5, atol=1e-5)


# -- generate_kvectors_for_ewald -----------------------------------------------------


@pytest.mark.parametrize("ns", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("cell", list(CELLS.values()), ids=list(CELLS))
def test_kvectors_for_ewald_reference(cell, ns):
    kvec = generate_kvectors_for_ewald(_t(cell), torch.tensor(ns))
    reference, _ = kvectors_ewald(cell, ns)
    assert kvec.shape == (ns[0] * ns[1] * ns[2], 3)
    assert kvec.dtype == torch.float64
    np.testing.assert_allclose(kvec.numpy(), reference, rtol=1e-13, atol=1e-13)
    assert torch.all(kvec[0] == 0.0)


def test_kvectors_for_ewald_flat_index():
    # row (ix·ny + iy)·nz + iz is m_ix b_0 + m_iy b_1 + m_iz b_2
    cell = CELLS["skewed"]
    ns = [3, 4, 5]
    b = 2 * np.pi * np.linalg.inv(cell).T
    kvec = generate_kvectors_for_ewald(_t(cell), torch.tensor(ns)).numpy()
    freqs = [np.fft.fftfreq(n) * n for n in ns]
    for ix, iy, iz in [(0, 0, 1), (1, 0, 0), (2, 3, 4), (1, 2, 3), (0, 3, 2)]:
        m = np.array([freqs[0][ix], freqs[1][iy], freqs[2][iz]])
        row = (ix * ns[1] + iy) * ns[2] + iz
        np.testing.assert_allclose(kvec[row], m @ b, atol=1e-12)


def test_kvectors_for_ewald_symmetric_for_odd_sizes():
    # with odd sizes, the set is closed under k -> -k
    kvec = generate_kvectors_for_ewald(_t(CELLS["skewed"]), torch.tensor([3, 5, 7]))
    keys = {tuple(np.round(k, 8)) for k in kvec.numpy()}
    assert len(keys) == 3 * 5 * 7
    for k in kvec.numpy():
        assert tuple(np.round(-k, 8) + 0.0) in keys


@pytest.mark.parametrize("ns", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("cell", list(CELLS.values()), ids=list(CELLS))
def test_half_ewald_set_with_weights_equals_the_whole_set(cell, ns):
    """The Ewald calculators sum over one k of each ±k pair with weight 2 (weight 1
    for k = 0 and for the unpaired -n/2 frequencies of even axes): against the
    reference set, each kept k is in it, the weights count every member once, and
    even sums agree."""
    from torchpme._core.kspace import half_kvectors_for_ewald

    reference, _ = kvectors_ewald(cell, ns)
    half, weights = half_kvectors_for_ewald(_t(cell), ns)
    half, weights = half.numpy(), weights.numpy()
    assert weights.sum() == len(reference)
    assert len(half) <= (len(reference) + 1) // 2 + 3 * len(reference) ** (2 / 3)
    keys = {tuple(np.round(k, 8) + 0.0) for k in reference}
    for k, w in zip(half, weights, strict=True):
        assert tuple(np.round(k, 8) + 0.0) in keys
        partner = tuple(np.round(-k, 8) + 0.0)
        assert w == (2.0 if partner in keys and np.any(k != 0) else 1.0)
    points = np.random.default_rng(0).normal(size=(6, 3))

    def even_sum(kvec, weight):
        gaussian = np.exp(-np.sum(kvec * kvec, axis=1) / 5.0)
        return (weight * gaussian) @ np.cos(kvec @ points.T)

    np.testing.assert_allclose(
        even_sum(half, weights), even_sum(reference, 1.0), rtol=1e-12, atol=1e-12
    )


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "function",
    [generate_kvectors_for_mesh, generate_kvectors_for_ewald],
    ids=["mesh", "ewald"],
)
@pytest.mark.parametrize(
    ("cell_shape", "ns"),
    [
        pytest.param((3,), [4, 4, 4], id="cell-1d"),
        pytest.param((2, 3), [4, 4, 4], id="cell-2x3"),
        pytest.param((3, 3, 1), [4, 4, 4], id="cell-3d"),
        pytest.param((3, 3), [4, 4], id="ns-2"),
        pytest.param((3, 3), [[4, 4, 4]], id="ns-1x3"),
    ],
)
def test_kvectors_bad_shapes(function, cell_shape, ns):
    cell = torch.ones(cell_shape, dtype=torch.float64)
    if cell_shape == (3, 3):
        cell = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError):
        function(cell, torch.tensor(ns))


# -- compute_batched_kvectors --------------------------------------------------------


def _ewald_ns(cell, lr_wavelength):
    k_cut = 2 * math.pi / lr_wavelength
    return [
        math.ceil(k_cut * float(length) / 2 / math.pi)
        for length in np.linalg.norm(cell, axis=1)
    ]


@pytest.mark.parametrize("lr_wavelength", [0.9, 1.7], ids=lambda x: f"lambda{x}")
def test_compute_batched_kvectors(lr_wavelength):
    cells = np.stack([CELLS["triclinic"], CELLS["orthorhombic"], CELLS["cubic"]])
    batched = compute_batched_kvectors(lr_wavelength, _t(cells))
    references = [kvectors_ewald(c, _ewald_ns(c, lr_wavelength))[0] for c in cells]
    k_max = max(len(r) for r in references)
    # the systems have different numbers of k-vectors, so padding is exercised
    assert len({len(r) for r in references}) > 1
    assert batched.shape == (3, k_max, 3)
    assert batched.dtype == torch.float64
    for b, reference in enumerate(references):
        np.testing.assert_allclose(
            batched[b, : len(reference)].numpy(), reference, rtol=1e-13, atol=1e-13
        )
        assert torch.all(batched[b, len(reference) :] == 0.0)


def test_compute_batched_kvectors_single_cell_matches_ewald():
    cell = _t(CELLS["skewed"])
    batched = compute_batched_kvectors(1.3, cell[None])
    ns = torch.tensor(_ewald_ns(CELLS["skewed"], 1.3))
    single = generate_kvectors_for_ewald(cell, ns)
    assert batched.shape == (1, *single.shape)
    torch.testing.assert_close(batched[0], single, rtol=1e-13, atol=1e-13)
