"""The fused short-range Coulomb pair sum of ``torchpme._core.shortrange``.

Values against a plain-Python sum of ``A erfc(r/√2σ)/r`` (``math.erfc``); first
and second derivatives against finite differences; half and full lists agree; the
calculators take the fused path only where it applies.
"""

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import torchpme
from torchpme._core.shortrange import coulomb_pair_sum

SMEARING, PREFACTOR = 0.8, 1.7


def _pairs(n_atoms=6, seed=0):
    rng = np.random.default_rng(seed)
    half = np.array([(i, j) for i in range(n_atoms) for j in range(i + 1, n_atoms)])
    half = np.concatenate([half, half[:3]])  # repeated pairs (periodic images)
    distances = rng.uniform(0.5, 3.0, size=len(half))
    charges = rng.normal(size=(n_atoms, 2))
    return torch.tensor(half), torch.tensor(distances), torch.tensor(charges)


def _constants(dtype=torch.float64):
    return torch.tensor(SMEARING, dtype=dtype), torch.tensor(PREFACTOR, dtype=dtype)


def test_values_match_a_direct_sum():
    indices, distances, charges = _pairs()
    result = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    expected = np.zeros(tuple(charges.shape))
    for (i, j), r in zip(indices.tolist(), distances.tolist()):
        v = PREFACTOR * math.erfc(r / (math.sqrt(2.0) * SMEARING)) / r
        expected[i] += 0.5 * charges[j].numpy() * v
        expected[j] += 0.5 * charges[i].numpy() * v
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-13, atol=1e-15)


def test_full_list_equals_half_list():
    indices, distances, charges = _pairs()
    full_indices = torch.cat([indices, indices.flip(1)])
    full_distances = torch.cat([distances, distances])
    half = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    full = coulomb_pair_sum(charges, full_indices, full_distances, *_constants(), True)
    assert torch.allclose(half, full, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("full", [False, True])
def test_gradients(full):
    indices, distances, charges = _pairs()
    charges.requires_grad_(True)
    distances.requires_grad_(True)

    def function(q, r):
        return coulomb_pair_sum(q, indices, r, *_constants(), full)

    assert gradcheck(function, (charges, distances))
    assert gradgradcheck(function, (charges, distances))


@pytest.mark.parametrize("full", [False, True])
def test_third_derivatives(full):
    """The second-derivative graph (forces in a loss) is itself differentiable:
    gradgradcheck of the first derivatives."""
    indices, distances, charges = _pairs()
    upstream = torch.randn(charges.shape, dtype=torch.float64)

    def first_derivatives(q, r):
        potential = coulomb_pair_sum(q, indices, r, *_constants(), full)
        return torch.autograd.grad(potential, (q, r), upstream, create_graph=True)

    inputs = (charges.requires_grad_(True), distances.requires_grad_(True))
    assert gradgradcheck(first_derivatives, inputs)


def test_second_derivatives_match_the_formula():
    """``d²V_i/dr²`` of one pair against ``v''(r)`` from finite differences of
    ``v(r) = A erfc(r/√2σ)/r`` (SciPy-free: math.erfc)."""
    indices = torch.tensor([[0, 1]])
    charges = torch.tensor([[1.0], [0.7]], dtype=torch.float64)
    r = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    potential = coulomb_pair_sum(charges, indices, r, *_constants(), False)
    (slope,) = torch.autograd.grad(potential[0, 0], r, create_graph=True)
    (curvature,) = torch.autograd.grad(slope, r)

    def v(x):
        return PREFACTOR * math.erfc(x / (math.sqrt(2.0) * SMEARING)) / x

    h = 1e-4
    expected = 0.5 * 0.7 * (v(1.3 + h) - 2 * v(1.3) + v(1.3 - h)) / h**2
    assert math.isclose(curvature.item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_energy_gradient(full, channels):
    # an upstream gradient proportional to the charges, as for forces: the
    # products kept by the forward serve it
    indices, distances, charges = _pairs()
    if full:
        indices = torch.cat([indices, indices.flip(1)])
        distances = torch.cat([distances, distances])
    charges = charges[:, :channels]
    distances.requires_grad_(True)

    def energy(r):
        return (
            charges * coulomb_pair_sum(charges, indices, r, *_constants(), full)
        ).sum()

    assert gradcheck(energy, (distances,))


def test_coincident_atoms_stay_finite():
    indices = torch.tensor([[0, 1]])
    charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    distances = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    result = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    (grad,) = torch.autograd.grad(result.sum(), distances)
    assert torch.isfinite(result).all() and torch.isfinite(grad).all()


def test_float32():
    indices, distances, charges = _pairs()
    result = coulomb_pair_sum(
        charges.float(), indices, distances.float(), *_constants(torch.float32), False
    )
    reference = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    assert result.dtype == torch.float32
    assert torch.allclose(result.double(), reference, rtol=1e-5, atol=1e-6)


def _calculator(potential):
    return torchpme.Calculator(potential).double()


def test_calculator_takes_the_fused_path_only_where_it_applies():
    indices, distances, charges = _pairs()
    args = (charges, indices, distances, None)
    plain = torchpme.CoulombPotential(smearing=SMEARING, prefactor=PREFACTOR)
    assert _calculator(plain)._fused_rspace(*args) is not None
    excluded = torchpme.CoulombPotential(smearing=SMEARING, exclusion_radius=1.0)
    assert _calculator(excluded)._fused_rspace(*args) is None
    learnable = torchpme.CoulombPotential(smearing=SMEARING)
    learnable.smearing.requires_grad_(True)
    assert _calculator(learnable)._fused_rspace(*args) is None
    other = torchpme.InversePowerLawPotential(2, smearing=SMEARING)
    assert _calculator(other)._fused_rspace(*args) is None
    mask = torch.ones(len(distances), dtype=torch.bool)
    assert _calculator(plain)._fused_rspace(charges, indices, distances, mask) is None


def test_calculator_result_equals_the_composed_potential():
    indices, distances, charges = _pairs()
    potential = torchpme.CoulombPotential(smearing=SMEARING, prefactor=PREFACTOR)
    calculator = _calculator(potential)
    fused = calculator._compute_rspace(charges, indices, distances)
    values = potential.sr_from_dist(distances)
    expected = torch.zeros_like(charges)
    expected.index_add_(
        0, indices[:, 0], 0.5 * charges[indices[:, 1]] * values[:, None]
    )
    expected.index_add_(
        0, indices[:, 1], 0.5 * charges[indices[:, 0]] * values[:, None]
    )
    assert torch.allclose(fused, expected, rtol=1e-12, atol=1e-14)


def test_index_columns_are_shared_while_the_indices_are_unchanged():
    import gc

    from torchpme._core import pairlist as pairs

    indices = torch.tensor([[0, 1], [1, 2], [2, 0]])
    first, second = pairs.index_columns(indices)
    assert first.is_contiguous() and torch.equal(first, indices[:, 0])
    again = pairs.index_columns(indices)
    assert again[0] is first and again[1] is second
    # modified in place: new columns that show the change
    indices[0, 0] = 2
    changed = pairs.index_columns(indices)
    assert changed[0] is not first and int(changed[0][0]) == 2
    # an equal but different tensor gets its own columns; one entry is kept
    other = indices.clone()
    assert pairs.index_columns(other)[0] is not changed[0]
    assert len(pairs._ENTRIES) == 1
    # the entry dies with its tensor
    del other
    gc.collect()
    assert len(pairs._ENTRIES) == 0


def test_results_follow_in_place_changes_of_the_indices():
    indices, distances, charges = _pairs()
    before = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    indices[:, [0, 1]] = indices[:, [1, 0]].clone()  # swapped in place: same sums
    swapped = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    assert torch.allclose(before, swapped, rtol=1e-14, atol=1e-15)
    indices[0] = torch.tensor([4, 5])  # a different pair: a different result
    assert not torch.allclose(
        coulomb_pair_sum(charges, indices, distances, *_constants(), False), before
    )


def test_index_columns_see_changes_made_through_numpy():
    from torchpme._core import pairlist as pairs

    array = np.array([[0, 1], [1, 2], [2, 0]])
    indices = torch.from_numpy(array)  # shares memory with the array
    assert int(pairs.index_columns(indices)[0][0]) == 0
    array[0, 0] = 2  # the tensor's version counter does not see this
    changed, _ = pairs.index_columns(indices)
    assert int(changed[0]) == 2


def test_kept_int32_columns_see_changes_to_the_high_words():
    """Kept columns of an int64 list are int32 (half the memory); an index changed
    behind the version counter by a multiple of 2³² (same low word) is still seen,
    and is then out of range, not silently read as the old atom."""
    from torchpme._core import pairlist as pairs
    from torchpme.neighbors import pair_distances

    array = np.array([[0, 1], [1, 2], [2, 0]])
    indices = torch.from_numpy(array)
    first, second = pairs.index_columns(indices)
    assert first.dtype == second.dtype == torch.int32
    assert first.tolist() == [0, 1, 2] and second.tolist() == [1, 2, 0]
    array[1, 1] += 2**32
    assert pairs.lookup(indices).second.dtype == torch.int64
    positions = torch.rand((3, 3), dtype=torch.float64)
    with pytest.raises(IndexError):
        pair_distances(positions, torch.eye(3), indices, torch.zeros((3, 3)))


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("shortcut", [True, False], ids=["cpu", "accelerator"])
def test_chunked_pairs_match_a_direct_sum(monkeypatch, full, shortcut):
    """Pairs are processed in chunks (here of 4, so a list spans several, the last
    one partial): values and the energy gradient against a plain-Python sum. Also
    as on an accelerator (or while compiling), where the forward keeps ``v'`` for
    the backward instead of the charge products of the CPU's energy shortcut."""
    from torchpme._core import defaults, shortrange

    monkeypatch.setattr(defaults, "PAIRS", 4)
    if not shortcut:
        monkeypatch.setattr(shortrange, "factors_possible", lambda tensor: False)
    indices, distances, charges = _pairs(n_atoms=7, seed=4)
    if full:
        indices = torch.cat([indices, indices.flip(1)])
        distances = torch.cat([distances, distances])
    distances.requires_grad_(True)
    result = coulomb_pair_sum(charges, indices, distances, *_constants(), full)
    expected = np.zeros(tuple(charges.shape))
    grad = np.zeros(len(distances))
    q = charges.numpy()
    for p, ((i, j), r) in enumerate(zip(indices.tolist(), distances.tolist())):
        a = math.sqrt(2.0) * SMEARING
        v = PREFACTOR * math.erfc(r / a) / r
        dv = (
            -(v + PREFACTOR * 2 / math.sqrt(math.pi) / a * math.exp(-((r / a) ** 2)))
            / r
        )
        expected[i] += 0.5 * q[j] * v
        grad[p] += 0.5 * float(q[i] @ q[j]) * dv
        if not full:
            expected[j] += 0.5 * q[i] * v
            grad[p] += 0.5 * float(q[i] @ q[j]) * dv
    np.testing.assert_allclose(result.detach().numpy(), expected, rtol=1e-13)
    energy = (charges * result).sum()
    (computed,) = torch.autograd.grad(energy, distances)
    np.testing.assert_allclose(computed.numpy(), grad, rtol=1e-12, atol=1e-15)

    def function(q, r):
        return coulomb_pair_sum(q, indices, r, *_constants(), full)

    assert gradcheck(function, (charges.requires_grad_(True), distances))


def test_distances_from_pair_distances_lend_their_columns(monkeypatch):
    """Distances just made by ``pair_distances`` from a kept, unmodified list give
    the pair sum their index columns (no second comparison of the list); any
    change to the list, or distances from elsewhere, go through the usual lookup.
    The results are the same either way."""
    from torchpme._core import pairlist
    from torchpme.neighbors import pair_distances

    looked_up = []
    lookup = pairlist.index_columns
    monkeypatch.setattr(
        pairlist, "index_columns", lambda i: looked_up.append(1) or lookup(i)
    )
    indices, _, charges = _pairs()
    rng = np.random.default_rng(5)
    positions = torch.tensor(rng.uniform(0, 3, (6, 3)), requires_grad=True)
    cell = 6.0 * torch.eye(3, dtype=torch.float64)
    shifts = torch.zeros((len(indices), 3))
    constants = _constants()

    distances = pair_distances(positions, cell, indices, shifts)
    fast = coulomb_pair_sum(charges, indices, distances, *constants, False)
    assert looked_up == []
    plain = torch.linalg.norm(
        positions[indices[:, 1]] - positions[indices[:, 0]], dim=1
    )
    expected = coulomb_pair_sum(charges, indices, plain, *constants, False)
    assert looked_up == [1]
    torch.testing.assert_close(fast, expected, rtol=1e-14, atol=1e-15)
    indices[0] = torch.tensor([4, 5])  # changed after the distances were made
    coulomb_pair_sum(charges, indices, distances, *constants, False)
    assert looked_up == [1, 1]


def test_strided_lists_keep_int64_columns():
    """A list that is a view with an odd row stride (two columns of three) cannot be
    read as int32 words: its kept columns stay int64, and results are right."""
    from torchpme._core import pairlist as pairs

    indices, distances, charges = _pairs()
    wide = torch.cat([indices, torch.zeros((len(indices), 1), dtype=torch.int64)], 1)
    strided = wide[:, :2]
    assert not strided.is_contiguous()
    first, second = pairs.index_columns(strided)
    assert first.dtype == torch.int64 and torch.equal(second, indices[:, 1])
    for _ in range(2):  # the second call compares the kept entry with the list
        result = coulomb_pair_sum(charges, strided, distances, *_constants(), False)
        expected = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
