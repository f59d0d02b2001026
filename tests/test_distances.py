"""Fused pair distances (``torchpme.neighbors.pair_distances``): values against
NumPy, first and second derivatives against finite differences."""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from torchpme.neighbors import pair_distances

CELL = [[4.0, 0.0, 0.0], [0.7, 4.5, 0.0], [0.3, -0.4, 5.0]]


def _system(seed=0):
    rng = np.random.default_rng(seed)
    positions = torch.tensor(rng.uniform(0, 4, size=(5, 3)), requires_grad=True)
    cell = torch.tensor(CELL, dtype=torch.float64, requires_grad=True)
    indices = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 4], [3, 3], [4, 0], [0, 1]])
    shifts = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [0, -1, 1], [0, 0, 0], [1, 1, 0], [-1, 0, 2], [0, 0, 1]]
    )
    return positions, cell, indices, shifts


@pytest.fixture(params=["whole", "chunked"])
def chunks(request, monkeypatch):
    """All pairs in one chunk, or chunks of 3 pairs (the last one partial)."""
    if request.param == "chunked":
        from torchpme._core import defaults

        monkeypatch.setattr(defaults, "PAIRS", 3)


def test_values_match_numpy(chunks):
    positions, cell, indices, shifts = _system()
    result = pair_distances(positions, cell, indices, shifts)
    p, a = positions.detach().numpy(), cell.detach().numpy()
    vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.numpy() @ a
    np.testing.assert_allclose(
        result.detach().numpy(), np.linalg.norm(vectors, axis=1), rtol=1e-14
    )


def test_gradients(chunks):
    positions, cell, indices, shifts = _system()

    def function(p, c):
        return pair_distances(p, c, indices, shifts)

    assert gradcheck(function, (positions, cell))
    assert gradgradcheck(function, (positions, cell))


def test_energy_like_gradient_and_retained_graph():
    positions, cell, indices, shifts = _system()
    distances = pair_distances(positions, cell, indices, shifts)
    energy = (1.0 / distances).sum()
    first = torch.autograd.grad(energy, (positions, cell), retain_graph=True)
    second = torch.autograd.grad(energy, (positions, cell))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # against the same distances written with plain operations
    p, c = positions.detach().requires_grad_(True), cell.detach().requires_grad_(True)
    vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.double() @ c
    plain = (1.0 / torch.linalg.norm(vectors, dim=1)).sum()
    for a, b in zip(first, torch.autograd.grad(plain, (p, c))):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-14)


def test_zero_distance_has_zero_gradient():
    positions = torch.zeros((2, 3), dtype=torch.float64, requires_grad=True)
    cell = torch.eye(3, dtype=torch.float64)
    indices = torch.tensor([[0, 1]])
    distances = pair_distances(positions, cell, indices, torch.zeros((1, 3)))
    (grad,) = torch.autograd.grad(distances.sum(), positions)
    assert float(distances) == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def test_forward_runs_with_gradients_on(chunks):
    """``torch.compile`` in PyTorch 2.5 traces the Function's forward with
    gradients on (eager mode runs it without), where ``out=`` writes from inputs
    that require grad raise: the forward reads detached inputs, so it runs that
    way too and gives the distances."""
    from torch.autograd.function import FunctionCtx

    from torchpme._core.distances import _PairDistances

    positions, cell, indices, shifts = _system()
    first, second = indices[:, 0].contiguous(), indices[:, 1].contiguous()
    with torch.enable_grad():
        result = _PairDistances.forward(
            FunctionCtx(), positions, cell, first, second, shifts, None
        )
    p, a = positions.detach().numpy(), cell.detach().numpy()
    vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.numpy() @ a
    np.testing.assert_allclose(
        result.detach().numpy(), np.linalg.norm(vectors, axis=1), rtol=1e-14
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_positions(dtype):
    positions, cell, indices, shifts = _system()
    result = pair_distances(
        positions.detach().to(dtype), cell.detach(), indices, shifts
    )
    assert result.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forces_of_a_reused_long_list_match_the_plain_accumulation(monkeypatch, dtype):
    """A PairList differentiated twice accumulates its forces through its sparse
    incidence (lowered threshold, so a small list takes that path); both paths
    agree with the composed operations, and a new list for changed indices too."""
    from torchpme._core import defaults
    from torchpme._core.pairlist import PairEnds
    from torchpme.neighbors import PairList

    monkeypatch.setattr(defaults, "MIN_SPARSE_PAIRS", 1)
    rng = np.random.default_rng(3)
    n_atoms, n_pairs = 40, 300
    positions = torch.tensor(rng.uniform(0, 4, (n_atoms, 3)), dtype=dtype)
    cell = torch.tensor(CELL, dtype=dtype)
    indices = torch.tensor(rng.integers(0, n_atoms, (n_pairs, 2)))
    indices = indices[indices[:, 0] != indices[:, 1]]
    shifts = torch.tensor(rng.integers(-1, 2, (len(indices), 3)))
    weights = torch.tensor(rng.normal(size=len(indices)), dtype=dtype)

    def forces(pairs):
        p = positions.clone().requires_grad_(True)
        c = cell.clone().requires_grad_(True)
        energy = (weights / pair_distances(p, c, pairs)).sum()
        return torch.autograd.grad(energy, (p, c))

    def plain(indices):
        p = positions.clone().requires_grad_(True)
        c = cell.clone().requires_grad_(True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(dtype) @ c
        energy = (weights / torch.linalg.norm(vectors, dim=1)).sum()
        return torch.autograd.grad(energy, (p, c))

    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    pairs = PairList(indices, shifts)
    first = forces(pairs)  # first use: indexed accumulation
    assert pairs._ends[n_atoms] is None
    second = forces(pairs)  # second: through the sparse incidence
    assert isinstance(pairs._ends[n_atoms], PairEnds)
    for a, b, c in zip(first, second, plain(indices)):
        torch.testing.assert_close(a, c, **tolerance)
        torch.testing.assert_close(b, c, **tolerance)
    indices[:5] = indices[:5].flip(1).clone()  # the old list does not follow
    for a, b in zip(forces(pairs), second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    changed_pairs = PairList(indices, shifts)
    forces(changed_pairs)
    changed = forces(changed_pairs)
    assert isinstance(changed_pairs._ends[n_atoms], PairEnds)
    for a, b in zip(changed, plain(indices)):
        torch.testing.assert_close(a, b, **tolerance)
    assert not torch.allclose(changed[0], first[0])


def test_pair_lists_off_cpu_read_nothing_on_the_host():
    """Off CPU a PairList keeps int64 columns (choosing int32 would read the
    indices on the host) and no sparse incidence (a meta tensor stands in for a
    device)."""
    from torchpme.neighbors import PairList

    indices = torch.tensor([[0, 1], [1, 2]], device="meta")
    pairs = PairList(indices)
    assert pairs.first.device.type == "meta" and pairs.first.dtype == torch.int64
    assert pairs.pair_ends(3) is None and pairs.pair_ends(3) is None


def test_work_buffer_is_reused_only_once_its_owner_is_done():
    """The (P, 3) buffer of a PairList serves the next step only after the backward
    pass of the previous one (or once its graph is gone); two graphs alive at once
    get two buffers, and both give the plain gradients."""
    import gc

    from torchpme.neighbors import PairList

    positions, cell, indices, shifts = _system()
    moved = (positions.detach() + 0.1).requires_grad_(True)

    def plain(p):
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.double() @ cell
        return torch.autograd.grad(torch.linalg.norm(vectors, dim=1).pow(-1).sum(), p)

    pairs = PairList(indices, shifts)
    first = pair_distances(positions, cell, pairs)
    buffer = pairs._rows[torch.float64][0]
    second = pair_distances(moved, cell, pairs)  # first graph still alive
    assert pairs._rows[torch.float64][0] is not buffer
    for d, p in [(first, positions), (second, moved)]:
        (grad,) = torch.autograd.grad(d.pow(-1).sum(), p)
        torch.testing.assert_close(grad, plain(p)[0], rtol=1e-13, atol=1e-14)
    kept = pairs._rows[torch.float64][0]
    third = pair_distances(positions, cell, pairs)  # both done: reused
    assert pairs._rows[torch.float64][0] is kept
    del third
    gc.collect()
    fourth = pair_distances(moved, cell, pairs)  # owner gone: reused
    assert pairs._rows[torch.float64][0] is kept
    (grad,) = torch.autograd.grad(fourth.pow(-1).sum(), moved)
    torch.testing.assert_close(grad, plain(moved)[0], rtol=1e-13, atol=1e-14)


def test_threads_sharing_a_list_get_their_own_gradients():
    """Threads stepping on one PairList at once: each forward claims the work
    buffer under the list's lock, so concurrent steps never share one."""
    import threading

    from torchpme.neighbors import PairList

    positions, cell, indices, shifts = _system()
    pairs = PairList(indices, shifts)
    failures = []

    def worker(offset):
        p0 = positions.detach() + offset
        vectors = p0[indices[:, 1]] - p0[indices[:, 0]] + shifts.double() @ cell
        expected = vectors / torch.linalg.norm(vectors, dim=1, keepdim=True)
        for _ in range(30):
            p = p0.clone().requires_grad_(True)
            weights = torch.arange(1.0, len(indices) + 1, dtype=torch.float64)
            distances = pair_distances(p, cell.detach(), pairs)
            (grad,) = torch.autograd.grad((weights * distances).sum(), p)
            reference = torch.zeros_like(p0)
            reference.index_add_(0, indices[:, 1], weights[:, None] * expected)
            reference.index_add_(0, indices[:, 0], -weights[:, None] * expected)
            if not torch.allclose(grad, reference, rtol=1e-12, atol=1e-12):
                failures.append(offset)

    threads = [threading.Thread(target=worker, args=(0.1 * k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_off_cpu_path_runs_forward_and_backward():
    """Off CPU, plain indices: the plain path runs (fresh buffer, indexed
    accumulation); a meta device stands in for an accelerator (shapes only)."""
    meta = {"device": "meta", "dtype": torch.float64}
    positions = torch.empty((5, 3), **meta).requires_grad_(True)
    cell = torch.empty((3, 3), **meta).requires_grad_(True)
    indices = torch.tensor([[0, 1], [1, 2], [2, 3]], device="meta")
    distances = pair_distances(positions, cell, indices, torch.empty((3, 3), **meta))
    grads = torch.autograd.grad(distances.sum(), (positions, cell))
    assert distances.shape == (3,) and distances.device.type == "meta"
    assert [g.shape for g in grads] == [(5, 3), (3, 3)]


def test_accumulation_off_cpu_matches_the_indexed_one():
    """Off the CPU the pair rows are added with ``index_add_`` (atomics; an
    accumulating ``index_put_`` sorts there): run here on the CPU, the same sums
    as the indexed accumulation and as a plain loop."""
    from torchpme._core import distances as pair_module

    rng = np.random.default_rng(5)
    n_atoms = 7
    first = torch.tensor(rng.integers(0, n_atoms, 50))
    second = torch.tensor(rng.integers(0, n_atoms, 50))
    rows = torch.tensor(rng.normal(size=(50, 3)))
    expected = torch.zeros(n_atoms, 3, dtype=torch.float64)
    for p in range(50):
        expected[second[p]] += rows[p]
        expected[first[p]] -= rows[p]
    zeros = torch.zeros(n_atoms, 3, dtype=torch.float64)
    atomic = pair_module.add_at_ends_atomically(zeros, rows.clone(), first, second)
    indexed = pair_module.accumulate_at_ends(rows.clone(), first, second, n_atoms)
    torch.testing.assert_close(atomic, expected)
    torch.testing.assert_close(indexed, expected)


class _NarrowIndexedRows(TorchDispatchMode):
    """Records row gathers and additions (2-D sources) indexed by int32 tensors: on
    CPU the additions (the gathers' backward) are ~7× slower than with int64
    indices (an accumulating ``index_put_`` is not)."""

    OPS = ("index_add", "index_select")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(name in str(func) for name in self.OPS):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            flat = [t for a in args if isinstance(a, (list, tuple)) for t in a]
            indices = [t for t in tensors + flat if isinstance(t, torch.Tensor)]
            narrow = any(t.dtype == torch.int32 for t in indices)
            rows = any(t.dim() >= 2 and t.is_floating_point() for t in tensors)
            if narrow and rows:
                self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_second_derivatives_of_a_kept_list_index_rows_with_int64():
    """A list used again keeps int32 index columns (half the memory); the
    second-derivative replays of the distances and of the Coulomb pair sum widen
    them, so training on forces does not pay the slow int32 row additions."""
    from torchpme import CoulombPotential, PMECalculator

    positions, cell, indices, shifts = _system()
    calculator = PMECalculator(CoulombPotential(smearing=1.0), 1.0)
    charges = torch.tensor([[1.0], [-1.0], [0.5], [-0.5], [0.0]], dtype=torch.float64)

    def forces_loss():
        pos = positions.detach().clone().requires_grad_(True)
        distances = pair_distances(pos, cell.detach(), indices, shifts)
        energy = (
            charges * calculator(charges, cell.detach(), pos, indices, distances)
        ).sum()
        (forces,) = torch.autograd.grad(energy, pos, create_graph=True)
        return forces.pow(2).sum(), pos

    forces_loss()  # the list is kept from its second use on
    loss, pos = forces_loss()
    with _NarrowIndexedRows() as mode:
        torch.autograd.grad(loss, pos)
    assert mode.seen == []
