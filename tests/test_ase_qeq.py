"""Charge equilibration through the ASE calculator (``qeq=``) against the dense
constrained solve in NumPy (tests/test_qeq.py's matrices, scaled to eV), finite
differences of the energy (forces, stress), and its refusals."""

import json
import re

import numpy as np
import pytest

ase = pytest.importorskip("ase")
ase_io = pytest.importorskip("ase.io")
from test_gaussian import CELL  # noqa: E402
from test_qeq import _cluster_matrix, _dense, _ewald_matrix  # noqa: E402

from torchpme.ase import TorchPMECalculator  # noqa: E402

EV_A = 14.399645478425667  # e²/(4πε₀) in eV·Å (CODATA), written out on purpose
TABLE = {"Na": (-1.5, 9.0, 0.6), "Cl": (1.8, 7.0, 0.75), "K": (-1.1, 6.5, 0.7)}
SYMBOLS = ["Na", "Cl", "K", "Cl", "Na", "Cl", "Cl"]
# Ewald fixed tight (charges to ~1e-10): the tuned defaults are tested for speed
# elsewhere; here the references are what is compared
TIGHT = {"smearing": 1.0, "params": {"lr_wavelength": 0.3}, "cutoff": 9.0}


def _atoms(periodic):
    positions = np.random.default_rng(4).random((len(SYMBOLS), 3)) @ CELL
    cell = CELL if periodic else np.zeros((3, 3))
    return ase.Atoms(SYMBOLS, positions=positions, cell=cell, pbc=periodic)


def _reference(atoms, periodic, total=0.0):
    """Charges and energy ``Σχq + ½ΣJq² + ½ k_e qᵀAq`` of the dense solve."""
    chi, hardness, widths = (
        np.array([TABLE[s][k] for s in atoms.get_chemical_symbols()]) for k in range(3)
    )
    if periodic:
        matrix = _ewald_matrix(atoms.positions, widths, np.asarray(atoms.cell[:]))
    else:
        matrix = _cluster_matrix(atoms.positions, widths)
    charges = _dense(EV_A * matrix, chi, hardness, total)
    energy = chi @ charges + 0.5 * hardness @ charges**2
    return charges, energy + 0.5 * EV_A * charges @ matrix @ charges


def _energy(atoms, **options):
    copy = atoms.copy()
    copy.calc = TorchPMECalculator(qeq=TABLE, **options)
    return copy.get_potential_energy()


@pytest.mark.parametrize("periodic", [True, False], ids=["crystal", "cluster"])
@pytest.mark.parametrize("total", [0.0, 1.0])
def test_charges_and_energy_equal_the_dense_solve(periodic, total):
    atoms = _atoms(periodic)
    options = {"method": "ewald", **TIGHT} if periodic else {}
    atoms.calc = TorchPMECalculator(qeq=TABLE, total_charge=total, **options)
    energy = atoms.get_potential_energy()
    charges, expected = _reference(atoms, periodic, total)
    np.testing.assert_allclose(atoms.get_charges(), charges, atol=1e-9)
    assert energy == pytest.approx(expected, rel=1e-9)
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, rel=1e-12)


@pytest.mark.parametrize("periodic", [True, False], ids=["crystal", "cluster"])
def test_forces_and_stress_are_derivatives_of_the_energy(periodic):
    atoms = _atoms(periodic)
    options = {"method": "ewald", **TIGHT} if periodic else {}
    atoms.calc = TorchPMECalculator(qeq=TABLE, **options)
    forces = atoms.get_forces()
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (6, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        slope = (_energy(plus, **options) - _energy(minus, **options)) / (2 * h)
        assert forces[atom, axis] == pytest.approx(-slope, rel=1e-6, abs=1e-8)
    if not periodic:
        return
    stress = atoms.get_stress(voigt=False)
    volume = atoms.get_volume()
    for i, j in [(0, 0), (1, 2)]:
        strains = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * h
            strained = atoms.copy()
            strained.set_cell(atoms.cell[:] @ strain, scale_atoms=False)
            strained.positions = atoms.positions @ strain
            strains.append(_energy(strained, **options))
        slope = (strains[0] - strains[1]) / (2 * h)
        assert stress[i, j] == pytest.approx(slope / volume, rel=1e-6, abs=1e-9)


def test_a_second_step_starts_from_the_previous_charges(monkeypatch):
    import torchpme._core.defaults as defaults

    monkeypatch.setattr(defaults, "QEQ_DENSE_ATOMS", 0)  # the iterative solver
    atoms = _atoms(True)
    atoms.calc = TorchPMECalculator(qeq=TABLE, method="ewald", **TIGHT)
    atoms.get_potential_energy()
    cold = atoms.calc.qeq_iterations
    atoms.positions += 1e-3
    atoms.get_potential_energy()
    assert atoms.calc.tunings == 1
    assert atoms.calc.qeq_iterations < cold
    charges, _ = _reference(atoms, True)
    np.testing.assert_allclose(atoms.get_charges(), charges, atol=1e-9)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"charges": [1.0] * 7}, "charges"),
        ({"qeq": {**TABLE, "Na": (1.0, -2.0, 0.5)}}, "qeq.*J > 0"),
        ({"qeq": {**TABLE, "Na": (1.0, 2.0)}}, "qeq.*three finite"),
        ({"qeq": {"Na": TABLE["Na"], "Cl": TABLE["Cl"]}}, "qeq.*none for K"),
        ({"cutoff": 3.0, "method": "ewald"}, "cutoff.*largest Gaussian width"),
        ({"total_charge": float("nan")}, "total_charge"),
    ],
    ids=["charges-too", "hardness", "three", "missing", "cutoff", "total"],
)
def test_bad_tables_are_refused_naming_the_argument(options, match):
    atoms = _atoms(True)
    options = {"qeq": TABLE, **options}
    with pytest.raises(ValueError, match=match):
        atoms.calc = TorchPMECalculator(**options)
        atoms.get_potential_energy()


def _spec(table):
    return ",".join(f"{k}={':'.join(str(x) for x in v)}" for k, v in table.items())


@pytest.mark.parametrize("form", ["inline", "json"])
def test_the_command_line_reports_the_equilibrated_charges(
    form, tmp_path, capsys, monkeypatch
):
    import torchpme._core.defaults as defaults

    monkeypatch.setattr(defaults, "QEQ_DENSE_ATOMS", 0)  # the iterative solver
    from torchpme.cli import main

    atoms = _atoms(True)
    path = str(tmp_path / "ions.extxyz")
    ase_io.write(path, atoms)
    spec = _spec(TABLE)
    if form == "json":
        spec = str(tmp_path / "qeq.json")
        with open(spec, "w", encoding="utf-8") as handle:
            json.dump(TABLE, handle)
    fixed = ["--method", "ewald", "--smearing", "1.0", "--lr-wavelength", "0.3"]
    arguments = [path, "--qeq", spec, "--cutoff", "9", "--json", *fixed]
    assert main(arguments) == 0
    summary = json.loads(capsys.readouterr().out)
    charges, energy = _reference(atoms, True)
    np.testing.assert_allclose(summary["charges"], charges, atol=1e-9)
    assert summary["energy"] == pytest.approx(energy, rel=1e-9)
    assert summary["qeq_iterations"] > 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--charges", "Na=1,Cl=-1,K=1"], "--charges.*--qeq"),
        (["--qeq", "Na=1:2:0.5,Cl=1:2:0.5"], "--qeq.*none for K"),
        (["--qeq", "Na=1:2"], "--qeq.*three finite numbers"),
        (["--qeq", "Na1:2:3"], "--qeq.*chi:J:sigma"),
        (["--cutoff", "2"], "--cutoff.*Gaussian width"),
    ],
    ids=["charges-too", "missing", "two-numbers", "malformed", "cutoff"],
)
def test_the_command_line_refuses_bad_tables(extra, match, tmp_path, capsys):
    from torchpme.cli import main

    path = str(tmp_path / "ions.extxyz")
    ase_io.write(path, _atoms(True))
    arguments = [path, "--qeq", _spec(TABLE), "--method", "ewald", *extra]
    assert main(arguments) == 1
    assert re.search(match, capsys.readouterr().err)
