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
from torchpme._core.shortrange import coulomb_pair_energy, coulomb_pair_sum

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
    plain = torchpme.CoulombPotential(smearing=SMEARING, prefactor=PREFACTOR)
    assert _calculator(plain)._fused_applies(None)
    excluded = torchpme.CoulombPotential(smearing=SMEARING, exclusion_radius=1.0)
    assert not _calculator(excluded)._fused_applies(None)
    learnable = torchpme.CoulombPotential(smearing=SMEARING)
    learnable.smearing.requires_grad_(True)
    assert not _calculator(learnable)._fused_applies(None)
    other = torchpme.InversePowerLawPotential(2, smearing=SMEARING)
    assert not _calculator(other)._fused_applies(None)
    mask = torch.ones(3, dtype=torch.bool)
    assert not _calculator(plain)._fused_applies(mask)


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


def test_pair_list_holds_contiguous_copies_of_the_columns():
    """A PairList copies its columns (int32 on CPU) once: the pair sum through it
    equals the sum through the tensor, and later in-place changes of the tensor
    do not reach it."""
    from torchpme.neighbors import PairList

    indices, distances, charges = _pairs()
    pairs = PairList(indices)
    assert pairs.first.is_contiguous() and pairs.first.dtype == torch.int32
    assert torch.equal(pairs.second.long(), indices[:, 1])
    expected = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    result = coulomb_pair_sum(charges, pairs, distances, *_constants(), False)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    indices[0] = torch.tensor([4, 5])
    again = coulomb_pair_sum(charges, pairs, distances, *_constants(), False)
    torch.testing.assert_close(again, expected, rtol=0, atol=0)


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


def test_results_see_changes_made_through_numpy():
    """Plain index tensors are read on every call: a change made through NumPy
    (which the version counter does not see) is in the next result."""
    array = np.array([[0, 1], [1, 2], [2, 0]])
    indices = torch.from_numpy(array)  # shares memory with the array
    distances = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64)
    charges = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    before = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    array[0, 0] = 2  # pair (2, 1) instead of (0, 1)
    after = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    expected = coulomb_pair_sum(
        charges, torch.tensor([[2, 1], [1, 2], [2, 0]]), distances, *_constants(),
        False,
    )  # fmt: skip
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert not torch.allclose(after, before)


def test_pair_lists_beyond_int32_keep_int64_columns():
    """Indices that do not fit in int32 keep int64 columns (never silently read
    as another atom): out of range, the distances raise."""
    from torchpme.neighbors import PairList, pair_distances

    indices = torch.tensor([[0, 1], [1, 2 + 2**32], [2, 0]])
    pairs = PairList(indices)
    assert pairs.first.dtype == pairs.second.dtype == torch.int64
    positions = torch.rand((3, 3), dtype=torch.float64)
    with pytest.raises(IndexError):
        pair_distances(positions, torch.eye(3, dtype=torch.float64), pairs)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("function", ["potentials", "energy"])
def test_chunked_pairs_match_a_direct_sum(monkeypatch, full, function):
    """Pairs are processed in chunks (here of 4, so a list spans several, the last
    one partial): values and the energy gradient against a plain-Python sum,
    through the potentials (whose forward keeps ``v'`` for the backward) and
    through the energy function (which keeps the charge products ``q_i q_j v'``)."""
    from torchpme._core import defaults

    monkeypatch.setattr(defaults, "PAIRS", 4)
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
    if function == "energy":
        energy = coulomb_pair_energy(charges, indices, distances, *_constants(), full)
        np.testing.assert_allclose(
            energy.detach().numpy(), (q * expected).sum(), rtol=1e-13
        )
    else:
        energy = (charges * result).sum()
    (computed,) = torch.autograd.grad(energy, distances)
    np.testing.assert_allclose(computed.numpy(), grad, rtol=1e-12, atol=1e-15)
    chosen = coulomb_pair_energy if function == "energy" else coulomb_pair_sum

    def evaluate(q, r):
        return chosen(q, indices, r, *_constants(), full)

    inputs = (charges.requires_grad_(True), distances)
    assert gradcheck(evaluate, inputs)
    assert gradgradcheck(evaluate, inputs)


def test_strided_lists_give_the_same_sums():
    """A list that is a view with an odd row stride (two columns of three): as a
    tensor and as a PairList (contiguous int32 copies), the same results."""
    from torchpme.neighbors import PairList

    indices, distances, charges = _pairs()
    wide = torch.cat([indices, torch.zeros((len(indices), 1), dtype=torch.int64)], 1)
    strided = wide[:, :2]
    assert not strided.is_contiguous()
    expected = coulomb_pair_sum(charges, indices, distances, *_constants(), False)
    for pairs in (strided, PairList(strided)):
        result = coulomb_pair_sum(charges, pairs, distances, *_constants(), False)
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
