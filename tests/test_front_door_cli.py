"""The front ends (``torchpme`` command, ASE calculator) at the front door.

One test per case of the front-end items of issue 18: accuracy in the units of
the output, unknown options and names refused, errors that name the argument,
``auto`` chosen by cost, warnings printed after the progress bar, and an NVE run
with the calculator's defaults. The command runs in this process through
``torchpme.cli.main``. References: the independent NumPy Ewald sum of
``tests/reference.py`` and energy conservation under velocity Verlet.
"""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ase")
import ase.io
from reference import ewald_sum

from torchpme._cli.structures import rocksalt
from torchpme.ase import TorchPMECalculator
from torchpme.cli import main

EV_A = 14.399645478425667  # e²/(4πε₀) in eV·Å


def run(capsys, *args):
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    """A displaced 16-ion rock-salt cell as extxyz, with its charges."""
    atoms = rocksalt(repeat=1, displacement=0.1, seed=3).repeat((2, 1, 1))
    path = tmp_path_factory.mktemp("front") / "nacl.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    return path, atoms


# -- item 10: accuracy in the units of the output ------------------------------


def test_cli_accuracy_is_in_output_units_and_the_estimate_holds(structure, capsys):
    path, atoms = structure
    target = 1e-3  # eV/Å
    # a fixed wavelength: the smearing follows from the accuracy alone (no timing)
    fixed = ["--method", "ewald", "--lr-wavelength", "1.0", "--json"]
    status, out, err = run(capsys, path, "--accuracy", target, *fixed)
    assert status == 0, err
    in_ev = json.loads(out)
    status, out, err = run(
        capsys, path, "--accuracy", target / EV_A, "--units", "gaussian", *fixed
    )
    gaussian = json.loads(out)
    # the same physical accuracy in two unit systems: the same parameters
    assert in_ev["parameters"] == gaussian["parameters"]
    estimate = in_ev["accuracy"]["estimate"]
    assert 0 < estimate <= target
    assert estimate == pytest.approx(EV_A * gaussian["accuracy"]["estimate"])
    _, _, forces = ewald_sum(atoms.positions, atoms.get_initial_charges(), atoms.cell)
    error = np.array(in_ev["forces"]) - EV_A * forces
    rms = math.sqrt((error**2).sum(axis=1).mean())
    assert rms <= 3 * estimate  # the estimate's stated margin


def test_cli_prints_the_estimate_next_to_the_target(capsys):
    status, out, err = run(capsys, "--accuracy", "1e-3", "--top", "0")
    assert status == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("accuracy")]
    assert "eV/Å" in line and "target 0.001 eV/Å" in line
    estimate = float(line.split()[1])
    assert 0 < estimate <= 1e-3


def test_ase_accuracy_is_in_force_units():
    atoms = rocksalt(repeat=1, displacement=0.1, seed=4)
    fixed = {"method": "ewald", "params": {"lr_wavelength": 1.0}}  # no timing
    default = TorchPMECalculator(accuracy=1e-3, **fixed)
    gaussian = TorchPMECalculator(accuracy=1e-3 / EV_A, prefactor=1.0, **fixed)
    for calc in (default, gaussian):
        calc.calculate(atoms.copy(), ["energy"])
    chosen = [c.parameters_in_use.as_dict() for c in (default, gaussian)]
    assert chosen[0] == pytest.approx(chosen[1])
    assert default.estimated_error <= 1e-3
    assert default.estimated_error == pytest.approx(EV_A * gaussian.estimated_error)


# -- item 7: unknown options and names are errors ------------------------------


def test_unknown_element_in_charges_is_an_error(structure, capsys):
    status, _, err = run(capsys, structure[0], "--charges", "Na=1,Cl=-1,Xx=2")
    assert status == 1
    assert "`--charges` must be" in err and "Xx" in err


def test_negative_top_is_an_error(capsys):
    status, _, err = run(capsys, "--top", "-1")
    assert status == 1 and "`--top` must be an integer >= 0, got -1" in err


def test_unknown_calculator_keyword_is_a_type_error():
    with pytest.raises(
        TypeError,
        match=r"params=\{'mesh_spacing': 0\.5\}.*unknown keyword mesh_spacing",
    ):
        TorchPMECalculator(mesh_spacing=0.5)
    with pytest.raises(TypeError, match="unknown keyword smearin"):
        TorchPMECalculator(smearin=1.0)


def test_k_space_parameters_of_another_method_are_errors():
    atoms = rocksalt(repeat=1, displacement=0.1, seed=4)
    cases = [
        ({"method": "ewald", "params": {"mesh_spacing": 0.5}}, "`mesh_spacing`"),
        ({"params": {"mesh_hi": 5}}, "`params` must be a dict with keys"),
    ]
    for kwargs, text in cases:
        atoms.calc = TorchPMECalculator(**kwargs)
        with pytest.raises(ValueError, match=text):
            atoms.get_potential_energy()


# -- item 8: every error names the argument -----------------------------------


def _nacl_inputs(dtype=torch.float64):
    from torchpme.neighbors import compute_neighbors

    atoms = rocksalt(repeat=1, displacement=0.1, seed=5)
    positions = torch.tensor(atoms.positions, dtype=dtype)
    cell = torch.tensor(atoms.cell[:], dtype=dtype)
    charges = torch.tensor(atoms.get_initial_charges(), dtype=dtype).reshape(-1, 1)
    indices, distances = compute_neighbors(positions, cell, 4.0)
    return charges, cell, positions, indices, distances


def _ewald():
    import torchpme

    potential = torchpme.CoulombPotential(smearing=1.0)
    return torchpme.EwaldCalculator(potential, lr_wavelength=1.0)


def test_half_precision_names_the_dtype():
    charges, cell, positions, indices, distances = _nacl_inputs(torch.float16)
    calculator = _ewald().to(torch.float16)
    with pytest.raises(TypeError, match="`positions` must be float32 or float64"):
        calculator(charges, cell, positions, indices, distances)


@pytest.mark.parametrize("kind", ["list", "numpy"])
def test_non_tensors_get_a_type_error(kind):
    charges, cell, positions, indices, distances = _nacl_inputs()
    convert = (lambda t: t.tolist()) if kind == "list" else (lambda t: t.numpy())
    with pytest.raises(TypeError, match=r"`positions` must be a torch\.Tensor"):
        _ewald().double()(charges, cell, convert(positions), indices, distances)


def test_neighbor_indices_out_of_range_on_cpu():
    charges, cell, positions, indices, distances = _nacl_inputs()
    indices = indices.clone()
    indices[0, 1] = positions.shape[0]  # one past the last atom
    with pytest.raises(ValueError, match="`neighbor_indices` must be indices in"):
        _ewald().double()(charges, cell, positions, indices, distances)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_ase_device_without_cuda_names_the_device():
    with pytest.raises(ValueError, match="`device` must be an available torch device"):
        TorchPMECalculator(device="cuda")


def test_garbage_cif_names_the_file(tmp_path, capsys):
    path = tmp_path / "garbage.cif"
    path.write_text("this is not a crystal structure\n\x00\x01")
    status, _, err = run(capsys, path)
    assert status == 1
    assert "`file` must be a structure file ASE can read" in err
    assert "AssertionError: AssertionError" not in err


def test_mesh_spacing_with_ewald_names_the_option(structure, capsys):
    status, _, err = run(
        capsys, structure[0], "--method", "ewald", "--mesh-spacing", "0.5"
    )
    assert status == 1
    assert "`--mesh-spacing` must be given only with --method pme or p3m" in err


def test_bench_plot_path_is_checked_before_the_benchmark(capsys):
    status, out, err = run(capsys, "bench", "--sizes", "1", "--plot", "/none/x.png")
    assert status == 1
    assert "`--plot` must be a file in an existing, writable folder" in err
    assert out == ""  # no table: nothing was timed


# -- item 9: auto by cost -----------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "method"),
    [(1, "ewald"), (3, "p3m"), (6, "p3m")],
    ids=["8", "216", "1728"],
)
def test_auto_chooses_by_the_cost_model(repeat, method):
    from torchpme._cli.engine import resolve_method

    atoms = rocksalt(repeat=repeat)
    cell = torch.tensor(atoms.cell[:])
    # the accuracy of the examples: 1e-4 e²/Å² (the former default)
    chosen = resolve_method("auto", len(atoms), [True] * 3, cell=cell, accuracy=1e-4)
    assert chosen == method


# -- item 5: warnings after the progress bar, with the option names ------------


def test_warning_is_printed_after_the_progress_bar(structure, capsys):
    path = structure[0]
    args = [path, "--method", "pme", "--mesh-spacing", "2.0", "--accuracy", "1e-6"]
    status, _, err = run(capsys, *args, "--progress", "--top", "0")
    assert status == 0, err
    lines = err.replace("\r", "\n").splitlines()
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("torchpme: warning: ")
    assert "--mesh-spacing" in warnings[0] and "eV/Å" in warnings[0]
    assert "mesh_hi" not in warnings[0]
    assert lines.index(warnings[0]) == len(lines) - 1  # after the bar


# -- issue 17: no import cycle between the command and the benchmark -----------


def test_bench_does_not_import_the_command():
    source = Path(__file__).parents[1] / "src" / "torchpme" / "_cli" / "bench.py"
    tree = ast.parse(source.read_text())
    modules = [
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ]
    assert all(module not in ("cli", "torchpme.cli") for module in modules)


# -- item 6: NVE molecular dynamics with the calculator's defaults --------------

#: the stated target of the default accuracy (README, ``torchpme.ase``): energy
#: drift below 1e-4 eV per atom per ps for rock salt at 300 K with a 2 fs step
DRIFT_TARGET = 1e-4


@pytest.mark.slow
def test_nve_drift_with_the_defaults_meets_the_target():
    from ase import units
    from ase.calculators.lj import LennardJones
    from ase.calculators.mixing import SumCalculator
    from ase.md.verlet import VelocityVerlet

    atoms = rocksalt(repeat=2)  # 64 ions
    rng = np.random.default_rng(11)
    masses = atoms.get_masses()[:, None]  # Maxwell-Boltzmann momenta at 300 K
    atoms.set_momenta(np.sqrt(masses * units.kB * 300) * rng.normal(size=(64, 3)))
    coulomb = TorchPMECalculator()
    # point charges alone collapse; a smooth short-range repulsion (equilibrium
    # near the rock-salt lattice constant) keeps the crystal together
    repulsion = LennardJones(epsilon=0.1, sigma=2.56, rc=7.0, smooth=True)
    atoms.calc = SumCalculator([coulomb, repulsion])
    totals, kinetic = [], []

    def record():
        totals.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())

    dynamics = VelocityVerlet(atoms, timestep=2.0 * units.fs)
    dynamics.attach(record, interval=1)
    dynamics.run(100)
    times = 2e-3 * np.arange(len(totals))  # ps
    drift = np.polyfit(times, totals, 1)[0] / len(atoms)  # eV per atom per ps
    # a real trajectory: energy flows between kinetic and potential energy
    assert max(kinetic) - min(kinetic) > 0.5
    assert abs(drift) < DRIFT_TARGET
    assert coulomb.tunings == 1


@pytest.mark.parametrize("method", ["ewald", "pme", "p3m"])
def test_float32_reports_its_rounding(method):
    """In float32 the reported error includes the rounding of the arithmetic: a
    PME run at 1e-7 e²/Å² measured 6× the method's estimate without it."""
    import warnings

    from torchpme._cli import frontdoor

    atoms = rocksalt(1)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    charges = atoms.get_initial_charges()
    reported = {}
    for dtype in (torch.float32, torch.float64):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = frontdoor.compute(
                atoms, charges, method, 1e-7, units="gaussian", dtype=dtype
            )
        rounded = [w for w in caught if "float32 rounding" in str(w.message)]
        assert bool(rounded) == (dtype == torch.float32)
        # the reference sees the structure the run saw (rounded in float32)
        seen = [
            torch.tensor(np.asarray(a), dtype=dtype).double().numpy()
            for a in (atoms.positions, atoms.cell[:])
        ]
        forces = ewald_sum(seen[0], charges, seen[1])[2]
        difference = result.evaluation.forces.numpy() - forces
        measured = math.sqrt(np.mean(np.sum(difference**2, axis=1)))
        assert measured <= result.error
        reported[dtype] = result.error
    # float64 reports the method's estimate alone
    assert reported[torch.float64] < reported[torch.float32] / 10
