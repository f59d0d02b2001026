"""Randomised calls over valid inputs: many systems and settings drawn from fixed seeds.

Each draw (the same in both interpreters: NumPy generators with fixed seeds) picks a
system (size, skew, channels, dtype), a potential and the settings of a calculator,
and compares the per-atom potentials and the gradients of the energy with respect to
positions, charges and cell. P3M runs with ``cartesian_influence=True`` here, the option
that reproduces torch-pme's influence function (and its derivative with respect to
the cell).
"""

import numpy as np
import torch

from . import case
from ._systems import pair_vectors, shifted_pairs

DRAWS = 12


def _system(rng, dtype):
    n = int(rng.integers(2, 14))
    cell = np.diag(rng.uniform(3.5, 6.0, size=3))
    if rng.random() < 0.5:
        cell[1, 0], cell[2, 0], cell[2, 1] = rng.uniform(-1.0, 1.0, size=3)
    positions = rng.random((n, 3)) @ cell
    charges = rng.normal(size=(n, int(rng.integers(1, 3))))
    if rng.random() < 0.7:
        charges -= charges.mean(axis=0)
    as_tensor = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return as_tensor(positions), as_tensor(charges), as_tensor(cell)


def _potential(torchpme, rng, smearing):
    choice = int(rng.integers(0, 3))
    prefactor = float(rng.choice([1.0, 14.399645]))
    if choice == 0:
        return torchpme.CoulombPotential(smearing=smearing, prefactor=prefactor)
    exponent = int(rng.choice([1, 2, 3, 4, 6]))
    return torchpme.InversePowerLawPotential(
        exponent=exponent, smearing=smearing, prefactor=prefactor
    )


def _calculator(torchpme, rng, method, potential, full, cartesian=True):
    if method == "ewald":
        wavelength = float(rng.uniform(0.4, 1.0))
        return torchpme.EwaldCalculator(potential, wavelength, full_neighbor_list=full)
    spacing = float(rng.uniform(0.3, 1.0))
    if method == "pme":
        nodes = int(rng.integers(3, 8))
        return torchpme.PMECalculator(potential, spacing, nodes, full)
    nodes = int(rng.integers(1, 6))
    options = {"cartesian_influence": True} if cartesian and _ours(torchpme) else {}
    return torchpme.P3MCalculator(potential, spacing, nodes, full, **options)


def _ours(torchpme) -> bool:
    return hasattr(torchpme, "set_value_checks")


def _draw(torchpme, method, seed, cartesian=True):
    rng = np.random.default_rng([("ewald", "pme", "p3m").index(method), seed])
    dtype = torch.float64 if rng.random() < 0.8 else torch.float32
    positions, charges, cell = _system(rng, dtype)
    smearing = float(rng.uniform(0.5, 1.2))
    cutoff = float(rng.uniform(2.0, 3.5))
    full = bool(rng.random() < 0.3)
    potential = _potential(torchpme, rng, smearing).to(dtype=dtype)
    calculator = _calculator(torchpme, rng, method, potential, full, cartesian)
    calculator.to(dtype=dtype)
    indices, shifts = shifted_pairs(positions, cell, cutoff, full)
    inputs = [t.clone().requires_grad_(True) for t in (positions, charges, cell)]
    # distances from the differentiable positions and cell, as users compute them
    vectors = pair_vectors(inputs[0], inputs[2], indices, shifts)
    distances = torch.linalg.norm(vectors, dim=1)
    result = calculator(inputs[1], inputs[2], inputs[0], indices, distances)
    energy = (inputs[1] * result).sum()
    return result, torch.autograd.grad(energy, inputs)


for _method in ("ewald", "pme", "p3m"):
    for _seed in range(DRAWS):

        def _run(torchpme, method=_method, seed=_seed):
            return _draw(torchpme, method, seed)

        _run.__name__ = f"{_method}_draw_{_seed:02d}"
        _run.__module__ = __name__
        case(rtol=1e-9, atol=1e-10)(_run)


LATTICE_INFLUENCE = (
    "P3M's influence function is written in lattice coordinates (exact for skewed "
    "cells; on orthorhombic cells the same values, another derivative with respect "
    "to the cell); cartesian_influence=True gives torch-pme's"
)

for _seed in range(DRAWS // 2):

    def _run(torchpme, seed=_seed):
        return _draw(torchpme, "p3m", seed, cartesian=False)

    _run.__name__ = f"p3m_lattice_influence_draw_{_seed:02d}"
    _run.__module__ = __name__
    case(rtol=1e-9, atol=1e-10, differs=LATTICE_INFLUENCE, within=0.2)(_run)
