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
KINDS = ["charges", "dipoles", "both", "quadrupoles", "all"]


def _system(kind, n=8, seed=0, charged=False):
    """Positions, charges, dipoles and traceless quadrupoles (None unless the
    kind has them) of ``n`` atoms in the triclinic ``CELL``."""
    rng = np.random.default_rng(seed)
    positions = rng.random((n, 3)) @ CELL
    charges = rng.normal(size=n)
    if not charged:
        charges -= charges.mean()
    dipoles = 0.5 * rng.normal(size=(n, 3))
    a = 0.3 * rng.normal(size=(n, 3, 3))
    symmetric = 0.5 * (a + a.transpose(0, 2, 1))
    trace = np.trace(symmetric, axis1=1, axis2=2)
    quadrupoles = symmetric - trace[:, None, None] * np.eye(3) / 3.0
    if kind not in ("both", "all"):
        dipoles = 0.0 * dipoles if kind != "dipoles" else dipoles
        charges = 0.0 * charges if kind != "charges" else charges
    if kind not in ("quadrupoles", "all"):
        quadrupoles = None
    return positions, charges, dipoles, quadrupoles


def _p3m(spacing=0.15, nodes=5, smearing=1.5):
    return P3MCalculator(CoulombPotential(smearing=smearing), spacing, nodes)


def _ours(calculator, positions, charges, dipoles, quadrupoles, cell, cutoff=12.0):
    """Energy, potentials, fields (and gradients) and the gradients of the energy
    to positions, dipoles and (through a strain) the cell."""
    module = MultipoleCalculator(calculator.to(DTYPE), quadrupoles is not None)
    p, q, mu = (torch.tensor(x, dtype=DTYPE) for x in (positions, charges, dipoles))
    theta = None if quadrupoles is None else torch.tensor(quadrupoles, dtype=DTYPE)
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
    phi, field, gradient = module(q, mu, sc, sp, indices, vectors, None, theta)
    energy = module.energy(q, mu, sc, sp, indices, vectors, None, theta)
    d_positions, d_dipoles, d_strain = torch.autograd.grad(energy, (p, mu, strain))
    return {
        "energy": float(energy.detach()),
        "potential": phi.detach().numpy(),
        "field": field.detach().numpy(),
        "field_gradient": gradient.detach().numpy(),
        "forces": -d_positions.numpy(),
        "d_dipoles": d_dipoles.numpy(),
        "virial": d_strain.numpy(),
    }


def _close(ours, reference, tolerance):
    scale = np.abs(reference).max()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_equals_the_direct_sum(kind):
    positions, charges, dipoles, quadrupoles = _system(kind, charged=True)
    ours = _ours(Calculator(CoulombPotential()), positions, charges, dipoles,
                 quadrupoles, np.zeros((3, 3)), cutoff=50.0)  # fmt: skip
    reference = multipole_direct(positions, charges, dipoles, quadrupoles)
    assert ours["energy"] == pytest.approx(reference["energy"], rel=1e-12)
    for key in _compared(quadrupoles):
        _close(ours[key], reference[key], 1e-12)


def _compared(quadrupoles):
    keys = ["potential", "field", "forces"]
    return keys + ([] if quadrupoles is None else ["field_gradient"])


def _torques(dipoles, quadrupoles, field, gradient):
    """``μ × E + ⅔ ε_abc Θ_bd G_dc`` (tests/reference_multipoles.py)."""
    torques = np.cross(dipoles, field)
    if quadrupoles is not None:
        product = quadrupoles @ gradient
        torques = torques + (2.0 / 3.0) * np.stack(
            [product[:, 1, 2] - product[:, 2, 1], product[:, 2, 0] - product[:, 0, 2],
             product[:, 0, 1] - product[:, 1, 0]], axis=1)  # fmt: skip
    return torques


@pytest.mark.parametrize("kind", KINDS)
def test_p3m_crystal_equals_the_ewald_sum(kind):
    """Energy, potentials, fields, field gradients, forces, torques and
    ``−∂E/∂μ = E``."""
    positions, charges, dipoles, quadrupoles = _system(kind, charged=kind == "all")
    ours = _ours(_p3m(), positions, charges, dipoles, quadrupoles, CELL)
    reference = multipole_ewald(positions, CELL, charges, dipoles, quadrupoles)
    assert ours["energy"] == pytest.approx(reference["energy"], rel=1e-7)
    for key in _compared(quadrupoles):
        _close(ours[key], reference[key], 1e-6)
    if kind != "charges":
        _close(-ours["d_dipoles"], reference["field"], 1e-6)
        torques = _torques(dipoles, quadrupoles, ours["field"], ours["field_gradient"])
        _close(torques, reference["torques"], 1e-6)


def test_stress_equals_differences_of_the_reference_energy():
    positions, charges, dipoles, quadrupoles = _system("all")
    ours = _ours(_p3m(), positions, charges, dipoles, quadrupoles, CELL)
    h = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 0)]:
        energies = []
        for sign in (1.0, -1.0):
            deformation = np.eye(3)
            deformation[a, b] += sign * h
            energies.append(
                multipole_ewald(
                    positions @ deformation,
                    CELL @ deformation,
                    charges,
                    dipoles,
                    quadrupoles,
                )["energy"]
            )
        slope = (energies[0] - energies[1]) / (2 * h)
        assert ours["virial"][a, b] == pytest.approx(slope, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(
    ("make", "exponent"),
    [(lambda h: _p3m(h, 5, 1.0), 4.0), (lambda h: PMECalculator(CoulombPotential(
        smearing=1.0), h, 6), 4.0)],
    ids=["p3m", "pme"],
)  # fmt: skip
def test_the_dipolar_mesh_error_falls_with_the_spacing(make, exponent):
    """Halving the mesh spacing cuts the dipolar energy error by at least
    ``2^exponent`` (the interpolation order, less a margin)."""
    positions, charges, dipoles, _ = _system("dipoles")
    reference = multipole_ewald(positions, CELL, charges, dipoles)["energy"]
    errors = [
        abs(
            _ours(make(h), positions, charges, dipoles, None, CELL)["energy"]
            - reference
        )
        for h in (0.6, 0.3)
    ]
    assert errors[1] < errors[0] / 2**exponent


def test_twice_differentiable():
    """gradgradcheck of the P3M energy in positions and dipoles (a coarse mesh:
    the check is of derivatives, not of accuracy)."""
    positions, charges, dipoles, quadrupoles = _system("all", n=4)
    c = torch.tensor(CELL, dtype=DTYPE)
    module = MultipoleCalculator(_p3m(1.0, 4).to(DTYPE), field_gradient=True)
    q = torch.tensor(charges, dtype=DTYPE)
    indices, _, shifts = compute_neighbors(
        torch.tensor(positions), c, 4.0, return_shifts=True
    )

    def energy(p, mu, theta):
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
        symmetric = 0.5 * (theta + theta.transpose(1, 2))
        trace = symmetric.diagonal(dim1=1, dim2=2).sum(-1)
        traceless = symmetric - trace[:, None, None] * torch.eye(3, dtype=DTYPE) / 3
        return module.energy(q, mu, c, p, indices, vectors, None, traceless)

    inputs = tuple(
        torch.tensor(x, dtype=DTYPE, requires_grad=True)
        for x in (positions, dipoles, quadrupoles)
    )
    assert torch.autograd.gradgradcheck(energy, inputs, fast_mode=True)


def test_bad_inputs_are_refused():
    positions, charges, dipoles, quadrupoles = _system("all", n=4)
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
    theta = torch.tensor(quadrupoles, dtype=DTYPE)
    with pytest.raises(ValueError, match="field_gradient"):
        module(q, mu, c, p, indices, vectors, None, theta)
    with_gradient = MultipoleCalculator(_p3m(0.5, 4).to(DTYPE), field_gradient=True)
    with pytest.raises(ValueError, match="traceless"):
        with_gradient(q, mu, c, p, indices, vectors, None, theta + torch.eye(3))
    with pytest.raises(TypeError, match="calculator"):
        MultipoleCalculator(EwaldCalculator(CoulombPotential(smearing=1.0), 0.5))
    from torchpme import InversePowerLawPotential

    with pytest.raises(TypeError, match="CoulombPotential"):
        MultipoleCalculator(
            P3MCalculator(InversePowerLawPotential(2, smearing=1.0), 0.5, 4)
        )


@pytest.mark.parametrize("mesh", [True, False], ids=["p3m", "bare"])
def test_torchscript_saved_and_loaded_gives_the_same_values_and_gradients(
    mesh, tmp_path
):
    positions, charges, dipoles, quadrupoles = _system("all", n=5)
    calculator = _p3m(0.5, 4) if mesh else Calculator(CoulombPotential())
    module = MultipoleCalculator(calculator.to(DTYPE), field_gradient=True)
    path = str(tmp_path / "multipoles.pt")
    torch.jit.save(torch.jit.script(module), path)
    loaded = torch.jit.load(path)
    c = torch.tensor(CELL, dtype=DTYPE)
    q, mu, theta = (
        torch.tensor(x, dtype=DTYPE) for x in (charges, dipoles, quadrupoles)
    )
    indices, _, shifts = compute_neighbors(
        torch.tensor(positions), c, 6.0, return_shifts=True
    )
    results = []
    for run in (module, loaded):
        p = torch.tensor(positions, dtype=DTYPE, requires_grad=True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
        phi, field, gradient = run(q, mu, c, p, indices, vectors, None, theta)
        energy = 0.5 * ((q * phi).sum() - (mu * field).sum())
        energy = energy - 0.5 * (theta * gradient).sum() / 3.0
        (forces,) = torch.autograd.grad(energy, p)
        results.append((phi, field, gradient, forces))
    for eager, scripted in zip(*results):
        torch.testing.assert_close(scripted, eager, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mesh", [True, False], ids=["p3m", "bare"])
@pytest.mark.parametrize("full", [False, True], ids=["half", "full"])
def test_the_energy_path_equals_the_fields(mesh, full):
    """``energy`` (pair energies, no quadrupoles) equals ``½ Σ (qφ − μ·E)`` of
    ``forward``, with its forces, for half and full neighbour lists."""
    positions, charges, dipoles, _ = _system("both", n=6, charged=True)
    calculator = _p3m(0.5, 4) if mesh else Calculator(CoulombPotential())
    calculator.full_neighbor_list = full
    module = MultipoleCalculator(calculator.to(DTYPE))
    c = torch.tensor(CELL, dtype=DTYPE)
    q, mu = torch.tensor(charges), torch.tensor(dipoles)
    indices, _, shifts = compute_neighbors(
        torch.tensor(positions), c, 6.0, full_list=full, return_shifts=True
    )
    results = []
    for through_fields in (True, False):
        p = torch.tensor(positions, requires_grad=True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
        if through_fields:
            phi, field, _ = module(q, mu, c, p, indices, vectors)
            energy = 0.5 * ((q * phi).sum() - (mu * field).sum())
        else:
            energy = module.energy(q, mu, c, p, indices, vectors)
        results.append((energy, torch.autograd.grad(energy, p)[0]))
    for fields, direct in zip(*results):
        torch.testing.assert_close(direct, fields, rtol=1e-12, atol=1e-12)


def test_a_batch_gives_each_system_its_own_result():
    """Three crystals packed (two of one mesh size, one of another): each as the
    NumPy reference says, and as a call of its own to rounding."""
    cells = [CELL, CELL @ np.diag([1.05, 0.98, 1.02]), 1.6 * CELL]
    module = MultipoleCalculator(_p3m().to(DTYPE), field_gradient=True)
    parts, offset = [], 0
    for seed, cell in enumerate(cells):
        positions, charges, dipoles, quadrupoles = _system(
            "all", n=5, seed=seed, charged=True
        )
        positions = positions @ np.linalg.inv(CELL) @ cell
        p, c = torch.tensor(positions), torch.tensor(cell)
        indices, _, shifts = compute_neighbors(p, c, 12.0, return_shifts=True)
        vectors = p[indices[:, 1]] - p[indices[:, 0]] + shifts.to(DTYPE) @ c
        parts.append(
            (torch.tensor(charges), torch.tensor(dipoles), torch.tensor(quadrupoles),
             c, p, indices, vectors, offset, (positions, charges, dipoles, quadrupoles))
        )  # fmt: skip
        offset += len(p)
    packed = [torch.cat([part[k] for part in parts]) for k in (0, 1, 2, 4, 6)]
    q, mu, theta, p, vectors = packed
    indices = torch.cat([part[5] + part[7] for part in parts])
    cells_t = torch.stack([part[3] for part in parts])
    system_index = torch.cat(
        [torch.full((len(part[0]),), b) for b, part in enumerate(parts)]
    )
    batch = module.forward_batch(
        q, mu, cells_t, p, system_index, indices, vectors, theta
    )
    for b, part in enumerate(parts):
        mine = system_index == b
        alone = module(part[0], part[1], part[3], part[4], part[5], part[6], None,
                       part[2])  # fmt: skip
        for batched, single in zip(batch, alone):
            torch.testing.assert_close(batched[mine], single, rtol=1e-12, atol=1e-12)
        reference = multipole_ewald(*part[8][:1], cells[b], *part[8][1:])
        _close(batch[1][mine].numpy(), reference["field"], 1e-6)
