"""``Calculator.energy_batch``: the energy of each packed system equals that system's
own ``Σ q · forward``, and its gradients, for any weights of the systems' energies,
equal those of ``forward_batch``; for the mesh methods the backward pass runs no
transform (the per-system shortcut is exact, not a reading of gradient values)."""

import pytest
import torch
from test_batching import CALCULATORS, distances, pair_list, systems
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from torchpme import Calculator, CoulombPotential, InversePowerLawPotential

ALL = dict(CALCULATORS)
ALL["direct"] = lambda p: Calculator(CoulombPotential())
ALL["pme-power"] = lambda p: CALCULATORS["pme"](
    InversePowerLawPotential(2, smearing=0.7)
)


def _packed(data, cutoff=2.5):
    lists = [pair_list(p, c, cutoff) for p, _, c in data]
    offsets = [0]
    for positions, _, _ in data:
        offsets.append(offsets[-1] + len(positions))
    indices = torch.cat([pairs + offset for (pairs, _), offset in zip(lists, offsets)])
    shifts = torch.cat([shifts for _, shifts in lists])
    system_index = torch.cat(
        [torch.full((len(p),), b) for b, (p, _, _) in enumerate(data)]
    )
    return indices, shifts, system_index


def _batch_distances(positions, cells, system_index, indices, shifts):
    owner_cells = cells.index_select(0, system_index.index_select(0, indices[:, 0]))
    vectors = (
        positions.index_select(0, indices[:, 1])
        - positions.index_select(0, indices[:, 0])
        + torch.einsum("pi,pij->pj", shifts, owner_cells)
    )
    return vectors.norm(dim=1)


@pytest.mark.parametrize("method", list(ALL))
@pytest.mark.parametrize("mesh_stack", [None, 2 * 16**3])
def test_energies_and_gradients_equal_the_potentials_path(
    method, mesh_stack, monkeypatch
):
    if mesh_stack is not None:
        if not method.startswith(("pme", "p3m")):
            pytest.skip("no meshes")
        from torchpme._core import defaults

        monkeypatch.setattr(defaults, "MESH_STACK", mesh_stack)
    calculator = ALL[method](CoulombPotential(smearing=0.7))
    data = systems()
    indices, shifts, system_index = _packed(data)
    weights = torch.linspace(-1.0, 2.0, len(data), dtype=torch.float64)
    results = []
    for use_energy in (False, True):
        positions = torch.cat([p for p, _, _ in data]).requires_grad_(True)
        charges = torch.cat([q for _, q, _ in data]).requires_grad_(True)
        cells = torch.stack([c for _, _, c in data]).requires_grad_(True)
        r = _batch_distances(positions, cells, system_index, indices, shifts)
        if use_energy:
            energies = calculator.energy_batch(
                charges, cells, positions, system_index, indices, r
            )
        else:
            potentials = calculator.forward_batch(
                charges, cells, positions, system_index, indices, r
            )
            per_atom = (charges * potentials).sum(dim=1)
            energies = torch.zeros(len(data), dtype=torch.float64).index_add(
                0, system_index, per_atom
            )
        grads = torch.autograd.grad(
            (weights * energies).sum(), (positions, charges, cells)
        )
        results.append((energies, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    # each system's energy is its own single-system energy
    for b, (positions, charges, cell) in enumerate(data):
        pairs, shift = pair_list(positions, cell, 2.5)
        single = calculator.energy(
            charges, cell, positions, pairs, distances(positions, cell, pairs, shift)
        )
        torch.testing.assert_close(results[1][0][b], single, rtol=1e-11, atol=1e-12)


class _Transforms(TorchDispatchMode):
    seen = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "fft" in str(func):
            self.seen += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_mesh_backward_runs_no_transform(method):
    calculator = CALCULATORS[method](CoulombPotential(smearing=0.7))
    data = systems()
    indices, shifts, system_index = _packed(data)
    positions = torch.cat([p for p, _, _ in data]).requires_grad_(True)
    charges = torch.cat([q for _, q, _ in data])
    cells = torch.stack([c for _, _, c in data])
    r = _batch_distances(positions, cells, system_index, indices, shifts)
    energies = calculator.energy_batch(
        charges, cells, positions, system_index, indices, r
    )
    weights = torch.arange(1.0, len(data) + 1, dtype=torch.float64)
    with _Transforms() as mode:
        torch.autograd.grad((weights * energies).sum(), positions)
    assert mode.seen == 0


@pytest.mark.parametrize("method", ["pme", "p3m-fixed"])
def test_gradcheck_and_gradgradcheck(method, monkeypatch):
    from torchpme._core import defaults

    monkeypatch.setattr(defaults, "MESH_STACK", 1)  # one mesh per stack
    calculator = CALCULATORS[method](CoulombPotential(smearing=0.7))
    data = systems(count=3)
    indices, shifts, system_index = _packed(data)
    cells = torch.stack([c for _, _, c in data])

    def function(positions, charges):
        r = _batch_distances(positions, cells, system_index, indices, shifts)
        return calculator.energy_batch(
            charges, cells, positions, system_index, indices, r
        )

    inputs = (
        torch.cat([p for p, _, _ in data]).requires_grad_(True),
        torch.cat([q for _, q, _ in data]).requires_grad_(True),
    )
    assert gradcheck(function, inputs)
    assert gradgradcheck(function, inputs)
