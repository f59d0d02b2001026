"""Charges and dipoles (torchpme.multipoles) against the NumPy multipole reference
(tests/reference_multipoles.py): energies, potentials, fields, forces, torques and
stress, for the bare sum of a cluster and P3M/PME of triclinic crystals."""

import numpy as np
import pytest
import torch
from reference_multipoles import multipole_direct, multipole_ewald

from torchpme import (
    Calculator,
    CoulombPotential,
    EwaldCalculator,
    P3MCalculator,
    PMECalculator,
)
from torchpme.multipoles import MultipoleCalculator
from torchpme.neighbors import compute_neighbors

DTYPE = torch.float64
CELL = np.array([[6.0, 0.0, 0.0], [0.7, 5.6, 0.0], [-0.4, 0.5, 6.2]])
KINDS = ["charges", "dipoles", "both"]


def _system(kind, n=8, seed=0, charged=False):
    rng = np.random.default_rng(seed)
    positions = rng.random((n, 3)) @ CELL
    charges = rng.normal(size=n)
    if not charged:
        charges -= charges.mean()
    dipoles = 0.5 * rng.normal(size=(n, 3))
    if kind == "charges":
        dipoles = 0.0 * dipoles
    if kind == "dipoles":
        charges = 0.0 * charges
    return positions, charges, dipoles


def _p3m(spacing=0.075, nodes=5):
    return P3MCalculator(CoulombPotential(smearing=1.0), spacing, nodes)


def _ours(calculator, positions, charges, dipoles, cell, cutoff=8.0):
    """Energy, potentials, fields and the gradients of the energy to positions,
    dipoles and (through a strain) the cell."""
    module = MultipoleCalculator(calculator.to(DTYPE))
    p, q, mu = (torch.tensor(x, dtype=DTYPE) for x in (positions, charges, dipoles))
    c = torch.tensor(cell, dtype=DTYPE)
    periodic = bool(c.abs().sum() > 0)
    indices, _, shifts = compute_neighbors(
        p, c if periodic else None, cutoff, return_shifts=True
    )
    p.requires_grad_(True)
    mu.requires_grad_(True)
    strain = torch.zeros(3, 3, dtype=DTYPE, requires_grad=True)
    deformation = torch.eye(3, dtype=DTYPE) + strain
    sp, sc = p @ deformation, c @ deformation
    vectors = sp[indices[:, 1]] - sp[indices[:, 0]] + shifts.to(DTYPE) @ sc
    phi, field = module(q, mu, sc, sp, indices, vectors)
    energy = 0.5 * ((q * phi).sum() - (mu * field).sum())
    d_positions, d_dipoles, d_strain = torch.autograd.grad(energy, (p, mu, strain))
    return {
        "energy": float(energy.detach()),
        "potential": phi.detach().numpy(),
        "field": field.detach().numpy(),
        "forces": -d_positions.numpy(),
        "d_dipoles": d_dipoles.numpy(),
        "virial": d_strain.numpy(),
    }


def _close(ours, reference, tolerance):
    scale = np.abs(reference).max()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_equals_the_direct_sum(kind):
    positions, charges, dipoles = _system(kind, charged=True)
    ours = _ours(Calculator(CoulombPotential()), positions, charges, dipoles,
                 np.zeros((3, 3)), cutoff=50.0)  # fmt: skip
    reference = multipole_direct(positions, charges, dipoles)
    assert ours["energy"] == pytest.approx(reference["energy"], rel=1e-12)
    for key in ("potential", "field", "forces"):
        _close(ours[key], reference[key], 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_p3m_crystal_equals_the_ewald_sum(kind):
    """Energy, potentials, fields, forces, torques ``μ × E`` and ``−∂E/∂μ = E``."""
    positions, charges, dipoles = _system(kind, charged=kind == "both")
    ours = _ours(_p3m(), positions, charges, dipoles, CELL)
    reference = multipole_ewald(positions, CELL, charges, dipoles)
    assert ours["energy"] == pytest.approx(reference["energy"], rel=1e-7)
    for key in ("potential", "field", "forces"):
        _close(ours[key], reference[key], 1e-6)
    if kind != "charges":
        _close(-ours["d_dipoles"], reference["field"], 1e-6)
        torques = np.cross(dipoles, ours["field"])
        _close(torques, reference["torques"], 1e-6)


def test_stress_equals_differences_of_the_reference_energy():
    positions, charges, dipoles = _system("both")
    ours = _ours(_p3m(), positions, charges, dipoles, CELL)
    h = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 0)]:
        energies = []
        for sign in (1.0, -1.0):
            deformation = np.eye(3)
            deformation[a, b] += sign * h
            energies.append(
                multipole_ewald(
                    positions @ deformation, CELL @ deformation, charges, dipoles
                )["energy"]
            )
        slope = (energies[0] - energies[1]) / (2 * h)
        assert ours["virial"][a, b] == pytest.approx(slope, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(
    ("make", "exponent"),
    [(lambda h: _p3m(h, 5), 4.0), (lambda h: PMECalculator(CoulombPotential(
        smearing=1.0), h, 6), 4.0)],
    ids=["p3m", "pme"],
)  # fmt: skip
def test_the_dipolar_mesh_error_falls_with_the_spacing(make, exponent):
    """Halving the mesh spacing cuts the dipolar energy error by at least
    ``2^exponent`` (the interpolation order, less a margin)."""
    positions, charges, dipoles = _system("dipoles")
    reference = multipole_ewald(positions, CELL, charges, dipoles)["energy"]
    errors = [
        abs(_ours(make(h), positions, charges, dipoles, CELL)["energy"] - reference)
        for h in (0.6, 0.3)
    ]
    assert errors[1] < errors[0] / 2**exponent


def test_twice_differentiable():
    """gradgradcheck of the P3M energy in positions and dipoles (a coarse mesh:
    the check is of derivatives, not of accuracy)."""
    positions, charges, dipoles = _system("both", n=4)
    c = torch.tensor(CELL, dtype=DTYPE)
    module = MultipoleCalculator(_p3m(1.0, 3).to(DTYPE))
    q = torch.tensor(charges, dtype=DTYPE)
    indices, _, shifts = compute_neighbors(
        torch.tensor(positions), c, 4.0, return_shifts=True
    )

    def energy(p, mu):
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
        return module.energy(q, mu, c, p, indices, vectors)

    inputs = (
        torch.tensor(positions, dtype=DTYPE, requires_grad=True),
        torch.tensor(dipoles, dtype=DTYPE, requires_grad=True),
    )
    assert torch.autograd.gradgradcheck(energy, inputs, fast_mode=True)


def test_bad_inputs_are_refused():
    positions, charges, dipoles = _system("both", n=4)
    p, q, mu, c = (
        torch.tensor(x, dtype=DTYPE) for x in (positions, charges, dipoles, CELL)
    )
    indices, _, shifts = compute_neighbors(p, c, 4.0, return_shifts=True)
    vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
    module = MultipoleCalculator(_p3m(0.5, 4).to(DTYPE))
    with pytest.raises(ValueError, match="dipoles"):
        module(q, mu[:, :2], c, p, indices, vectors)
    with pytest.raises(ValueError, match="charges"):
        module(q[:3], mu, c, p, indices, vectors)
    with pytest.raises(ValueError, match="neighbor_vectors"):
        module(q, mu, c, p, indices, vectors[:, 0])
    with pytest.raises(ValueError, match="periodic"):
        module(q, mu, c, p, indices, vectors, torch.tensor([True, True, False]))
    with pytest.raises(TypeError, match="calculator"):
        MultipoleCalculator(EwaldCalculator(CoulombPotential(smearing=1.0), 0.5))
    from torchpme import InversePowerLawPotential

    with pytest.raises(TypeError, match="CoulombPotential"):
        MultipoleCalculator(
            P3MCalculator(InversePowerLawPotential(2, smearing=1.0), 0.5, 4)
        )
