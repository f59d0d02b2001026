"""A step leaves no reference cycles: what it allocates is freed when the last
reference goes, not whenever the garbage collector next runs.

An autograd Function that stores its own output on ``ctx`` makes the cycle ctx →
output → ``grad_fn`` = ctx; each step then leaves its pair-sized tensors alive until
a collection (at 18 M pairs, 140 MB per step). With the collector disabled during
one step, a collection afterwards must find nothing to free.
"""

import gc

import pytest
import torch
from reference import neighbor_list

from torchpme import (
    Calculator,
    CalculatorDipole,
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
)
from torchpme._core.multipole_pairs import multipole_pair_energy
from torchpme.neighbors import pair_distances

DTYPE = torch.float64


def system(seed=0, n_atoms=24, length=5.0):
    generator = torch.Generator().manual_seed(seed)
    cell = length * torch.eye(3, dtype=DTYPE) + 0.3 * torch.rand(
        (3, 3), dtype=DTYPE, generator=generator
    )
    positions = torch.rand((n_atoms, 3), dtype=DTYPE, generator=generator) @ cell
    charges = torch.randn((n_atoms, 1), dtype=DTYPE, generator=generator)
    charges -= charges.mean()
    pairs, shifts = neighbor_list(positions.numpy(), cell.numpy(), 2.5)
    return positions, charges, cell, torch.from_numpy(pairs), torch.from_numpy(shifts)


def _library_node(node) -> bool:
    """Whether ``node`` is the backward node of one of this library's autograd
    Functions (with PyTorch 2.11, graphs compiled by earlier tests leave nodes of
    their own Functions to the collector at unrelated times)."""
    if not isinstance(node, torch.autograd.function.BackwardCFunction):
        return False
    return type(node)._forward_cls.__module__.startswith("torchpme")


def cycles_left_by(step) -> list:
    """Tensors and autograd nodes that a collection frees after one ``step`` (other
    objects are not counted: another thread, e.g. a compiler's worker left by an
    earlier test, may make garbage of its own meanwhile)."""
    step()  # caches and kept state settle first
    step()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what is collected is kept in gc.garbage
    try:
        step()
        gc.collect()
        return [
            type(o).__name__
            for o in gc.garbage
            if type(o) is torch.Tensor  # not the fake tensors of a compiler
            or _library_node(o)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


CALCULATORS = {
    "direct": lambda: Calculator(CoulombPotential()),
    "ewald": lambda: EwaldCalculator(CoulombPotential(smearing=1.0), 0.8),
    "pme": lambda: PMECalculator(CoulombPotential(smearing=1.0), 0.7),
    "p3m": lambda: P3MCalculator(CoulombPotential(smearing=1.0), 0.7),
}


@pytest.mark.parametrize("name", list(CALCULATORS))
@pytest.mark.parametrize("second_order", [False, True])
def test_energy_and_gradients_leave_no_cycles(name, second_order):
    positions, charges, cell, indices, shifts = system()
    calculator = CALCULATORS[name]()

    def step():
        inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
        distances = pair_distances(inputs[0], inputs[2], indices, shifts)
        potentials = calculator(inputs[1], inputs[2], inputs[0], indices, distances)
        energy = (inputs[1] * potentials).sum()
        grads = torch.autograd.grad(energy, inputs, create_graph=second_order)
        if second_order:  # a force-matching loss
            torch.autograd.grad((grads[0] ** 2).sum(), inputs)

    assert cycles_left_by(step) == []


@pytest.mark.parametrize("method", [PMECalculator, P3MCalculator])
def test_batched_step_leaves_no_cycles(method):
    systems = [system(seed) for seed in range(3)]
    offsets = [0, 24, 48]
    calculator = method(CoulombPotential(smearing=1.0), 0.7)
    positions = torch.cat([s[0] for s in systems])
    charges = torch.cat([s[1] for s in systems])
    cells = torch.stack([s[2] for s in systems])
    index = torch.arange(3).repeat_interleave(24)
    indices = torch.cat([s[3] + o for s, o in zip(systems, offsets, strict=True)])
    shifts = torch.cat([s[4] for s in systems])
    owner = index[indices[:, 0]]

    def step():
        pos = positions.clone().requires_grad_(True)
        vectors = (
            pos[indices[:, 1]]
            - pos[indices[:, 0]]
            + torch.einsum("pi,pij->pj", shifts, cells[owner])
        )
        potentials = calculator.forward_batch(
            charges, cells, pos, index, indices, torch.linalg.norm(vectors, dim=1)
        )
        torch.autograd.grad((charges * potentials).sum(), pos)

    assert cycles_left_by(step) == []


def test_dipole_step_leaves_no_cycles():
    positions, _, cell, indices, shifts = system()
    dipoles = torch.randn((positions.shape[0], 3), dtype=DTYPE)
    calculator = CalculatorDipole(PotentialDipole(smearing=1.0), lr_wavelength=0.8)

    def step():
        pos = positions.clone().requires_grad_(True)
        vectors = pos[indices[:, 1]] - pos[indices[:, 0]] + shifts @ cell
        potentials = calculator(dipoles, cell, pos, indices, vectors)
        torch.autograd.grad((dipoles * potentials).sum(), pos)

    assert cycles_left_by(step) == []


def test_multipole_pair_energy_leaves_no_cycles():
    """The pair energy's Function keeps its inputs and gradients on ``ctx``:
    freed with the graph."""
    positions, charges, cell, pairs, shifts = system()
    dipoles = torch.randn(positions.shape[0], 3, dtype=DTYPE)
    vectors = positions[pairs[:, 1]] - positions[pairs[:, 0]] + shifts.to(DTYPE) @ cell

    def step():
        v = vectors.clone().requires_grad_(True)
        energy = multipole_pair_energy(charges[:, 0], dipoles, pairs, v, 0.4, False)
        torch.autograd.grad(energy, v)

    assert cycles_left_by(step) == []
