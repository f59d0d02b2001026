"""Metatensor bindings: metadata, validation, physics through the wrapper, TorchScript.

Skipped when metatensor-torch / metatomic-torch are not installed (they are the
optional ``metatensor`` extra).
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("metatensor.torch", reason="needs metatensor-torch (extra)")
pytest.importorskip("metatomic.torch", reason="needs metatomic-torch (extra)")

from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import System

import torchpme
import torchpme.metatensor
from torchpme.neighbors import neighbor_pairs
from torchpme.potentials import CoulombPotential

# CsCl with lattice constant 1: E = −M · 2/√3 per ion pair (Madelung, M = 1.762675)
CSCL_ENERGY = -1.762674773070 * 2 / math.sqrt(3)
SAMPLES = ["first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"]


def make_system(positions, cell, charges, pbc=(True, True, True), types=None):
    charges = torch.as_tensor(charges, dtype=positions.dtype)
    if charges.dim() == 1:
        charges = charges.reshape(-1, 1)
    n_atoms = positions.shape[0]
    system = System(
        types=torch.tensor(types or [1] * n_atoms),
        positions=positions,
        cell=cell,
        pbc=torch.tensor(pbc),
    )
    data = TensorMap(
        Labels("_", torch.tensor([[0]])),
        [
            TensorBlock(
                values=charges,
                samples=Labels(
                    ["system", "atom"],
                    torch.stack([torch.zeros(n_atoms), torch.arange(n_atoms)], 1).to(
                        torch.int32
                    ),
                ),
                components=[],
                properties=Labels(
                    "charge", torch.arange(charges.shape[1]).reshape(-1, 1)
                ),
            )
        ],
    )
    system.add_data("charge", data)
    return system


def make_neighbors(positions, cell, cutoff, pbc=(True, True, True), full=False):
    """A metatomic-style neighbour block with pair vectors differentiable in
    positions and cell."""
    indices, shifts = neighbor_pairs(positions, cell, cutoff, list(pbc), full)
    vectors = (
        positions[indices[:, 1]]
        - positions[indices[:, 0]]
        + shifts.to(cell.dtype) @ cell
    )
    return TensorBlock(
        values=vectors.reshape(-1, 3, 1),
        samples=Labels(SAMPLES, torch.cat([indices, shifts], dim=1).to(torch.int32)),
        components=[Labels("xyz", torch.tensor([[0], [1], [2]]))],
        properties=Labels("distance", torch.tensor([[0]])),
    )


def cscl(dtype=torch.float64):
    positions = torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0.5]], dtype=dtype)
    cell = torch.eye(3, dtype=dtype)
    return positions, cell, torch.tensor([1.0, -1.0], dtype=dtype)


def calculators():
    smearing = 0.99 / 5
    return {
        "ewald": torchpme.metatensor.EwaldCalculator(
            CoulombPotential(smearing=smearing), lr_wavelength=smearing / 2
        ),
        "pme": torchpme.metatensor.PMECalculator(
            CoulombPotential(smearing=smearing), mesh_spacing=smearing / 8
        ),
        "p3m": torchpme.metatensor.P3MCalculator(
            CoulombPotential(smearing=smearing), mesh_spacing=smearing / 8
        ),
    }


@pytest.mark.parametrize("name", ["ewald", "pme", "p3m"])
def test_cscl_madelung_energy_through_the_wrapper(name):
    positions, cell, charges = cscl()
    system = make_system(positions, cell, charges)
    result = calculators()[name](system, make_neighbors(positions, cell, 0.99))
    potentials = result.block().values
    energy = float((charges.reshape(-1, 1) * potentials).sum())
    assert energy == pytest.approx(CSCL_ENERGY, abs=2e-4)


def test_output_metadata_with_two_channels():
    positions, cell, _ = cscl()
    charges = torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=torch.float64)
    system = make_system(positions, cell, charges)
    result = calculators()["ewald"](system, make_neighbors(positions, cell, 0.99))
    assert result.keys == Labels("_", torch.tensor([[0]], dtype=torch.int32))
    block = result.block()
    assert block.samples.names == ["system", "atom"]
    assert block.samples.values.tolist() == [[0, 0], [0, 1]]
    assert block.properties.names == ["charges_channel"]
    assert block.properties.values.tolist() == [[0], [1]]
    assert block.values.shape == (2, 2)
    # the second channel is the first scaled by 1/2, and potentials are linear
    torch.testing.assert_close(block.values[:, 1], 0.5 * block.values[:, 0])


def test_direct_calculator_matches_coulomb_pair_sum():
    rng = np.random.default_rng(0)
    positions = torch.tensor(rng.normal(scale=2.0, size=(5, 3)))
    charges = torch.tensor([1.0, -0.5, 0.25, -1.0, 0.25])
    cell = torch.zeros(3, 3, dtype=torch.float64)
    pbc = (False, False, False)
    system = make_system(positions, cell, charges.double(), pbc=pbc)
    neighbors = make_neighbors(positions, cell, 100.0, pbc=pbc)
    calculator = torchpme.metatensor.Calculator(CoulombPotential())
    energy = float(
        (
            charges.double().reshape(-1, 1)
            * calculator(system, neighbors).block().values
        ).sum()
    )
    expected = 0.0
    for i in range(5):
        for j in range(i + 1, 5):
            expected += float(charges[i] * charges[j]) / float(
                torch.linalg.norm(positions[i] - positions[j])
            )
    assert energy == pytest.approx(expected, rel=1e-12)


def test_forces_through_neighbor_vectors_match_finite_differences():
    positions, cell, charges = cscl()
    positions = positions + torch.tensor([[0.03, -0.02, 0.01], [0.0, 0.04, -0.03]])
    calculator = calculators()["ewald"]

    def energy(pos):
        system = make_system(pos, cell, charges)
        potentials = calculator(system, make_neighbors(pos, cell, 0.99)).block().values
        return (charges.reshape(-1, 1) * potentials).sum()

    moving = positions.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(energy(moving), moving)
    step = 1e-5
    for atom, axis in [(0, 0), (1, 2)]:
        plus, minus = positions.clone(), positions.clone()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        numeric = (energy(plus) - energy(minus)) / (2 * step)
        assert float(gradient[atom, axis]) == pytest.approx(float(numeric), abs=1e-6)


@pytest.mark.parametrize("pbc", [(True, True, False), (False, False, False)])
def test_kspace_calculators_need_full_periodicity(pbc):
    # metatomic keeps zero cell vectors on free axes: no volume for k-space sums
    positions, _, charges = cscl()
    cell = torch.diag(torch.tensor([float(p) for p in pbc], dtype=torch.float64))
    system = make_system(positions, cell, charges, pbc=pbc)
    neighbors = make_neighbors(positions, cell, 0.99, pbc=pbc)
    with pytest.raises(ValueError, match="`system` must be periodic along all"):
        calculators()["ewald"](system, neighbors)


def _charge_block(charges):
    return TensorBlock(
        values=charges.reshape(-1, 1).clone(),
        samples=Labels(["system", "atom"], torch.tensor([[0, 0], [0, 1]])),
        components=[],
        properties=Labels("charge", torch.tensor([[0]])),
    )


def _broken(kind):
    positions, cell, charges = cscl()
    system = make_system(positions, cell, charges)
    neighbors = make_neighbors(positions, cell, 0.99)
    if kind == "dtype":
        neighbors = TensorBlock(
            values=neighbors.values.float(),
            samples=neighbors.samples,
            components=neighbors.components,
            properties=neighbors.properties,
        )
    elif kind == "samples":
        neighbors = TensorBlock(
            values=neighbors.values,
            samples=Labels(
                ["i", "j", "cell_shift_a", "cell_shift_b", "cell_shift_c"],
                neighbors.samples.values,
            ),
            components=neighbors.components,
            properties=neighbors.properties,
        )
    elif kind == "components":
        neighbors = TensorBlock(
            values=neighbors.values,
            samples=neighbors.samples,
            components=[Labels("abc", torch.tensor([[0], [1], [2]]))],
            properties=neighbors.properties,
        )
    elif kind == "properties":
        neighbors = TensorBlock(
            values=neighbors.values,
            samples=neighbors.samples,
            components=neighbors.components,
            properties=Labels("length", torch.tensor([[0]])),
        )
    elif kind == "no-charge":
        system = System(
            types=system.types, positions=positions, cell=cell, pbc=system.pbc
        )
    elif kind == "two-blocks":
        system = System(
            types=system.types, positions=positions, cell=cell, pbc=system.pbc
        )
        system.add_data(
            "charge",
            TensorMap(
                Labels("_", torch.tensor([[0], [1]])),
                [_charge_block(charges), _charge_block(charges)],
            ),
        )
    elif kind == "components-in-charge":
        system = System(
            types=system.types, positions=positions, cell=cell, pbc=system.pbc
        )
        system.add_data(
            "charge",
            TensorMap(
                Labels("_", torch.tensor([[0]])),
                [
                    TensorBlock(
                        values=torch.ones(2, 1, 1, dtype=torch.float64),
                        samples=Labels(
                            ["system", "atom"], torch.tensor([[0, 0], [0, 1]])
                        ),
                        components=[Labels("c", torch.tensor([[0]]))],
                        properties=Labels("charge", torch.tensor([[0]])),
                    )
                ],
            ),
        )
    return system, neighbors


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("dtype", "`neighbors` must be values of the dtype"),
        ("samples", "`neighbors` must be sample names"),
        ("components", "`neighbors` must be one component"),
        ("properties", "`neighbors` must be properties"),
        ("no-charge", "`system` must be 'charge' data"),
        ("two-blocks", "`charge` must be a TensorMap with one block"),
        ("components-in-charge", "`charge` must be a block without components"),
    ],
)
def test_validation_errors(kind, text):
    system, neighbors = _broken(kind)
    with pytest.raises(ValueError, match=text):
        calculators()["ewald"](system, neighbors)


def _script_and_compare(name):
    positions, cell, charges = cscl()
    system = make_system(positions, cell, charges)
    neighbors = make_neighbors(positions, cell, 0.99)
    calculator = calculators()[name]
    scripted = torch.jit.script(calculator)
    torch.testing.assert_close(
        scripted(system, neighbors).block().values,
        calculator(system, neighbors).block().values,
    )


@pytest.mark.parametrize("name", ["ewald", "pme", "p3m"])
def test_torchscript(name):
    _script_and_compare(name)


def test_missing_extra_gives_an_install_hint(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "metatomic.torch", None)
    monkeypatch.delitem(sys.modules, "torchpme.metatensor", raising=False)
    with pytest.raises(ImportError, match="pip install metatensor-torch"):
        importlib.import_module("torchpme.metatensor")
