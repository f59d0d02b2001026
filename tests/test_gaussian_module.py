"""GaussianCharges as a module: TorchScript, batches of systems, float32, each
against the NumPy Ewald and erf sums of tests/test_gaussian.py."""

import numpy as np
import pytest
import torch
from test_gaussian import CELL, _cluster_energy, _ewald_energy, _system

from torchpme import Calculator, CoulombPotential, EwaldCalculator, PMECalculator
from torchpme.gaussian import GaussianCharges
from torchpme.neighbors import compute_neighbors

CLUSTER = torch.tensor([False, False, False])
CRYSTAL = torch.tensor([True, True, True])


def _tensors(positions, charges, widths, cell, cutoff, dtype=torch.float64):
    p, q, w, c = (
        torch.tensor(x, dtype=dtype) for x in (positions, charges, widths, cell)
    )
    is_cluster = not bool(c.abs().sum() > 0)
    indices, distances = compute_neighbors(p, None if is_cluster else c, cutoff)
    return q.reshape(-1, 1), w, c, p, indices, distances


def _energy(module, tensors, periodic=None):
    q = tensors[0]
    return float((q * module(*tensors, periodic)).sum())


@pytest.mark.parametrize(
    "make",
    [
        lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.35),
        lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.25, 7),
    ],
    ids=["ewald", "pme"],
)
def test_scripted_crystal_equals_the_numpy_ewald_sum(make):
    positions, charges, widths = _system(charged=True)
    tensors = _tensors(positions, charges, widths, CELL, 9.0)
    scripted = torch.jit.script(GaussianCharges(make(), self_energy=True))
    expected = _ewald_energy(positions, charges, widths, CELL, self_energy=True)
    scale = np.sum(np.abs(charges)) ** 2
    assert abs(_energy(scripted, tensors) - expected) < 1e-6 * scale
    eager = GaussianCharges(make(), self_energy=True)
    torch.testing.assert_close(
        scripted(*tensors), eager(*tensors), rtol=1e-12, atol=1e-12
    )


def test_scripted_cluster_equals_the_erf_sum():
    positions, charges, widths = _system(charged=True)
    tensors = _tensors(positions, charges, widths, np.zeros((3, 3)), 50.0)
    scripted = torch.jit.script(GaussianCharges(Calculator(CoulombPotential())))
    expected = _cluster_energy(positions, charges, widths)
    assert _energy(scripted, tensors, CLUSTER) == pytest.approx(expected, rel=1e-12)


def test_float32_follows_the_inputs():
    positions, charges, widths = _system()
    tensors = _tensors(positions, charges, widths, CELL, 9.0, torch.float32)
    module = GaussianCharges(EwaldCalculator(CoulombPotential(smearing=1.0), 0.35))
    module.to(torch.float32)
    potential = module(*tensors)
    assert potential.dtype == torch.float32
    expected = _ewald_energy(positions, charges, widths, CELL)
    energy = float((tensors[0] * potential).sum())
    assert abs(energy - expected) < 1e-5 * np.sum(np.abs(charges)) ** 2


def test_a_batch_gives_each_system_its_own_result():
    """A neutral crystal, a charged crystal of another cell and a cluster in one
    PME call: each as the NumPy sums say (and as a call of its own)."""
    other_cell = CELL @ np.diag([1.1, 0.95, 1.05])
    systems = [
        (*_system(n=6, seed=1), CELL, CRYSTAL),
        (*_system(n=7, seed=2, charged=True), other_cell, CRYSTAL),
        (*_system(n=5, seed=3, charged=True), np.zeros((3, 3)), CLUSTER),
    ]
    calculator = PMECalculator(CoulombPotential(smearing=1.0), 0.25, 7)
    module = GaussianCharges(calculator, self_energy=True)
    parts, offset = [], 0
    for positions, charges, widths, cell, periodic in systems:
        cutoff = 50.0 if not periodic.any() else 9.0
        q, w, c, p, indices, distances = _tensors(
            positions, charges, widths, cell, cutoff
        )
        parts.append((q, w, c, p, indices + offset, distances, periodic))
        offset += len(p)
    q, w, p, indices, distances = (
        torch.cat([part[k] for part in parts]) for k in (0, 1, 3, 4, 5)
    )
    cells = torch.stack([part[2] for part in parts])
    periodic = torch.stack([part[6] for part in parts])
    system_index = torch.cat(
        [torch.full((len(part[0]),), b) for b, part in enumerate(parts)]
    )
    potential = module.forward_batch(
        q, w, cells, p, system_index, indices, distances, periodic
    )
    for b, (positions, charges, widths, cell, flags) in enumerate(systems):
        mine = system_index == b
        energy = float((q[mine] * potential[mine]).sum())
        if flags.any():
            expected = _ewald_energy(positions, charges, widths, cell, True)
        else:
            expected = _cluster_energy(positions, charges, widths, True)
        assert abs(energy - expected) < 1e-5 * np.sum(np.abs(charges)) ** 2, b
        alone = parts[b]
        single = module(
            alone[0], alone[1], alone[2], alone[3],
            alone[4] - alone[4].min(), alone[5], flags,
        )  # fmt: skip
        torch.testing.assert_close(potential[mine], single, rtol=1e-10, atol=1e-10)


def test_a_charged_slab_in_a_batch_is_refused():
    positions, charges, widths = _system(charged=True)
    q, w, c, p, indices, distances = _tensors(positions, charges, widths, CELL, 9.0)
    module = GaussianCharges(PMECalculator(CoulombPotential(smearing=1.0), 0.25, 7))
    slab = torch.tensor([[True, True, False]])
    zeros = torch.zeros(len(p), dtype=torch.int64)
    with pytest.raises(ValueError, match="neutral"):
        module.forward_batch(q, w, c[None], p, zeros, indices, distances, slab)
