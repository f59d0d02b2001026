"""The ``torchpme`` console command, driven as a subprocess.

References: the rock-salt Madelung constant (perfect crystals), the direct Coulomb
pair sum (molecules), Newton's third law (forces of a periodic system sum to
zero) and the energy identity ``E = Σ q_i V_i`` of the written output.
"""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ase")
import ase
import ase.io
from ase.build import bulk

MADELUNG_ROCKSALT = 1.747564594633  # Johnson & Templeton (1961)
EV_A = 14.399645478425667  # e²/(4πε₀) in eV·Å
COMMAND = [sys.executable, "-m", "torchpme.cli"]
# small single-process jobs: one thread each, so parallel runs do not contend
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(*args, cwd=None):
    result = subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENVIRONMENT,
        timeout=300,
    )
    return result


def run_json(*args, cwd=None):
    result = run(*args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def main_json(capsys, *args):
    """The same command in this process (``torchpme.cli.main``), for the cases
    that need no fresh interpreter."""
    from torchpme.cli import main

    status = main([*map(str, args), "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Structure files written with ASE for the runs below."""
    folder = tmp_path_factory.mktemp("structures")
    paths = {}

    perfect = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    paths["cif"] = folder / "nacl.cif"
    ase.io.write(paths["cif"], perfect)

    displaced = perfect.repeat((2, 1, 1))
    rng = np.random.default_rng(4)
    displaced.positions += rng.normal(scale=0.1, size=displaced.positions.shape)
    displaced.set_initial_charges(
        [1.0 if s == "Na" else -1.0 for s in displaced.get_chemical_symbols()]
    )
    paths["extxyz"] = folder / "displaced.extxyz"
    ase.io.write(paths["extxyz"], displaced, format="extxyz")

    molecule = ase.Atoms(
        "NaClNaCl",
        positions=[[0, 0, 0], [2.4, 0.1, 0], [0.3, 2.5, 0.2], [2.6, 2.3, -0.4]],
        pbc=False,
    )
    paths["molecule"] = folder / "molecule.xyz"
    ase.io.write(paths["molecule"], molecule, format="xyz")

    wire = perfect.copy()
    wire.pbc = [True, False, False]
    wire.set_initial_charges(
        [1.0 if s == "Na" else -1.0 for s in wire.get_chemical_symbols()]
    )
    paths["wire"] = folder / "wire.extxyz"
    ase.io.write(paths["wire"], wire, format="extxyz")

    paths["garbage"] = folder / "garbage.cif"
    paths["garbage"].write_text("this is not a crystal structure\n\x00\x01")
    return paths


def test_default_run_reproduces_the_madelung_constant():
    result = run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("energy", "largest forces", "stress", "parameters", "time"):
        assert line in out
    match = re.search(r"Madelung check .*M = ([0-9.]+).* OK", out)
    assert match, out
    assert float(match.group(1)) == pytest.approx(MADELUNG_ROCKSALT, abs=2e-6)
    energy = float(re.search(r"energy\s+(-?[0-9.]+) eV", out).group(1))
    # displaced ions: below the perfect crystal's Madelung energy is impossible
    # for ±1 charges only at large displacements; here it stays close to it
    perfect = -MADELUNG_ROCKSALT * 32 * EV_A / 2.82
    assert energy == pytest.approx(perfect, rel=0.05)


def test_cif_with_charges_option(files):
    summary = run_json(files["cif"], "--charges", "Na=1,Cl=-1", "--accuracy", "1e-6")
    expected = -MADELUNG_ROCKSALT * 4 * EV_A / 2.82  # 4 ion pairs, r0 = a/2
    assert summary["energy"] == pytest.approx(expected, rel=1e-5)
    assert np.abs(np.array(summary["forces"])).max() < 1e-4  # perfect crystal
    stress = np.array(summary["stress"])
    volume = 5.64**3
    # Coulomb energy is homogeneous of degree −1: cubic stress σ = −E/(3V)
    np.testing.assert_allclose(stress, -expected / (3 * volume) * np.eye(3), atol=1e-5)


@pytest.fixture(scope="module")
def tight_reference(files):
    """Energy and forces of the extxyz structure from the library's Ewald
    calculator at tight, hand-picked settings (no tuning, no CLI)."""
    import torch

    from torchpme.calculators import EwaldCalculator
    from torchpme.neighbors import compute_neighbors
    from torchpme.potentials import CoulombPotential

    atoms = ase.io.read(files["extxyz"])
    positions = torch.tensor(atoms.positions, requires_grad=True)
    cell = torch.tensor(atoms.cell[:])
    charges = torch.tensor(atoms.get_initial_charges()).reshape(-1, 1)
    indices, distances = compute_neighbors(positions, cell, 10.0)
    calculator = EwaldCalculator(
        CoulombPotential(smearing=1.0, prefactor=EV_A), lr_wavelength=0.3
    )
    energy = (charges * calculator(charges, cell, positions, indices, distances)).sum()
    (gradient,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()), -gradient.numpy()


@pytest.mark.parametrize(
    ("method", "where"),
    [("ewald", "subprocess"), ("pme", "in-process"), ("p3m", "in-process")],
)
def test_extxyz_charges_from_file_and_output(
    files, tmp_path, tight_reference, capsys, method, where
):
    output = tmp_path / "result.extxyz"
    args = [files["extxyz"], "--method", method, "--accuracy", "1e-5"]
    if where == "subprocess":
        summary = run_json(*args, "--output", output)
    else:
        summary = main_json(capsys, *args, "--output", output)
    assert summary["parameters"]["method"] == method
    energy, forces = tight_reference
    assert summary["energy"] == pytest.approx(energy, abs=2e-3)
    np.testing.assert_allclose(summary["forces"], forces, atol=2e-3)
    # Newton's third law: the forces of a periodic system sum to zero; exactly
    # for Ewald, up to the mesh's interpolation error for PME and P3M
    tolerance = 1e-8 if method == "ewald" else 2e-3
    np.testing.assert_allclose(np.sum(summary["forces"], axis=0), 0.0, atol=tolerance)
    written = ase.io.read(output)
    charges = written.get_initial_charges()
    potentials = written.arrays["potentials"]
    assert written.get_potential_energy() == pytest.approx(summary["energy"])
    assert np.sum(charges * potentials) == pytest.approx(summary["energy"])
    # extxyz stores 8 significant digits
    np.testing.assert_allclose(written.get_forces(), summary["forces"], atol=1e-7)


def test_json_output_and_gaussian_units_for_a_molecule(files, tmp_path, capsys):
    output = tmp_path / "molecule.json"
    summary = main_json(
        capsys,
        files["molecule"],
        "--charges",
        "Na=1,Cl=-1",
        "--units",
        "gaussian",
        "--output",
        output,
    )
    positions = ase.io.read(files["molecule"]).positions
    charges = [1.0, -1.0, 1.0, -1.0]
    expected = sum(
        charges[i] * charges[j] / np.linalg.norm(positions[i] - positions[j])
        for i in range(4)
        for j in range(i + 1, 4)
    )
    assert summary["parameters"]["method"] == "direct"
    assert summary["energy"] == pytest.approx(expected, rel=1e-12)
    assert summary["stress"] is None
    data = json.loads(output.read_text())
    assert data["energy"] == pytest.approx(expected, rel=1e-12)
    assert len(data["forces"]) == 4 and len(data["potentials"]) == 4
    assert data["units"]["energy"] == "e²/Å"


def test_bench_writes_a_scaling_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from torchpme.cli import main

    plot = tmp_path / "scaling.png"
    table = tmp_path / "timings.json"
    status = main(
        [
            "bench",
            "--sizes",
            "1,2",
            "--methods",
            "ewald,pme",
            "--repeats",
            "1",
            "--plot",
            str(plot),
            "--json",
            str(table),
            "--progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "bench" in captured.err  # the progress bar (tqdm or plain lines)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(table.read_text())
    assert {(r["method"], r["n_atoms"]) for r in rows} == {
        (m, n) for m in ("ewald", "pme") for n in (8, 64)
    }
    assert all(r["seconds"] > 0 for r in rows)
    assert "ewald" in captured.out and "pme" in captured.out


# error cases run as separate processes (in parallel): a bad file, an element
# without a charge, a charged system, a periodic method without a cell
SUBPROCESS_ERRORS = {
    "garbage-file": (["{garbage}"], "`file` must be a structure file ASE can read"),
    "unknown-element": (["{cif}", "--charges", "Na=1"], "missing: Cl"),
    "charged": (["{cif}", "--charges", "Na=1,Cl=-0.5"], "`charges` must be neutral"),
    "no-cell": (
        ["{molecule}", "--charges", "Na=1,Cl=-1", "--method", "ewald"],
        "`method` must be 'auto', 'pme' or 'p3m' for a structure periodic on fewer",
    ),
}
# and the option errors through ``main`` in this process (same code path)
IN_PROCESS_ERRORS = {
    "missing-file": (["does-not-exist.cif"], "`file` must be an existing"),
    "no-charges": (["{cif}"], "`--charges` must be given"),
    "bad-charges": (["{cif}", "--charges", "Na:1"], "`--charges` must be of the"),
    "ewald-wire": (["{wire}", "--method", "ewald"], "`method` must be 'auto', 'pme'"),
    "bad-output": (
        ["{cif}", "--charges", "Na=1,Cl=-1", "--output", "x.pdb"],
        "`--output` must be",
    ),
    "bad-accuracy": (["--accuracy", "-1"], "`--accuracy` must be"),
    "bad-cutoff": (["--cutoff", "nan"], "`--cutoff` must be"),
    "bad-device": (["--device", "nonsense"], "`--device` must be"),
    "bench-sizes": (["bench", "--sizes", "0"], "`--sizes` must be"),
    "bench-methods": (["bench", "--methods", "fmm"], "`--methods` must be"),
    "bench-plot": (["bench", "--plot", "x.svg"], "`--plot` must be a .png"),
}


def _names(files):
    return {key: str(value) for key, value in files.items()}


@pytest.fixture(scope="module")
def error_runs(files, tmp_path_factory):
    """The subprocess error cases, started at once (each fails early)."""
    folder = tmp_path_factory.mktemp("errors")
    names = _names(files)
    processes = {
        case: subprocess.Popen(
            [*COMMAND, *[a.format(**names) for a in args]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=folder,
            env=ENVIRONMENT,
        )
        for case, (args, _) in SUBPROCESS_ERRORS.items()
    }
    results = {}
    for case, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[case] = (process.returncode, stdout, stderr)
    return results


def _check_error(returncode, stderr, text):
    assert returncode != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("torchpme: error: ")
    assert text in lines[0]


@pytest.mark.parametrize("case", SUBPROCESS_ERRORS)
def test_errors_are_one_line_with_nonzero_status(error_runs, case):
    returncode, _, stderr = error_runs[case]
    _check_error(returncode, stderr, SUBPROCESS_ERRORS[case][1])


@pytest.mark.parametrize("case", IN_PROCESS_ERRORS)
def test_option_errors_are_one_line(files, tmp_path, monkeypatch, capsys, case):
    from torchpme.cli import main

    monkeypatch.chdir(tmp_path)
    args, text = IN_PROCESS_ERRORS[case]
    status = main([a.format(**_names(files)) for a in args])
    captured = capsys.readouterr()
    _check_error(status, captured.err, text)


def test_charged_system_runs_with_allow_charged(files, capsys):
    summary = main_json(
        capsys,
        files["cif"],
        "--charges",
        "Na=1,Cl=-0.5",
        "--allow-charged",
        "--accuracy",
        "1e-3",
    )
    assert math.isfinite(summary["energy"])


def test_float32_agrees_with_float64(files, capsys):
    args = [files["cif"], "--charges", "Na=1,Cl=-1", "--accuracy", "1e-5"]
    double = main_json(capsys, *args)
    single = main_json(capsys, *args, "--dtype", "float32")
    assert single["energy"] == pytest.approx(double["energy"], rel=1e-5)


def test_console_script_runs_main_with_freed_memory_kept(monkeypatch):
    from importlib.metadata import entry_points

    import torchpme.cli
    from torchpme._core import allocator

    scripts = entry_points(group="console_scripts", name="torchpme")
    if not scripts:
        pytest.skip("the `torchpme` console script is not declared in this install")
    (script,) = scripts
    assert script.load() is torchpme.cli.console
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(torchpme.cli, "main", lambda: calls.append("main") or 0)
    assert torchpme.cli.console() == 0
    assert calls == ["keep", "main"]


def test_unreachable_accuracy_is_a_one_line_warning(files, capsys):
    from torchpme.cli import main

    status = main(
        [str(files["cif"]), "--charges", "Na=1,Cl=-1", "--method", "pme"]
        + ["--accuracy", "1e-12", "--json"]
    )
    captured = capsys.readouterr()
    assert status == 0
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("torchpme: warning: ")
    assert "accuracy" in warnings[0]


@pytest.mark.parametrize("smearing", [0.3, 1.0, 3.0])
def test_tuner_grids_reach_the_smearing_scale(smearing):
    import torch

    from torchpme._cli.engine import grid_bounds

    cell = torch.diag(torch.tensor([5.0, 12.0, 30.0], dtype=torch.float64))
    ewald = grid_bounds("ewald", smearing, cell)["ns_hi"]
    assert ewald >= 14 and 5.0 / ewald <= smearing / 2  # wavelengths down to σ/2
    mesh = grid_bounds("pme", smearing, cell)["mesh_hi"]
    spacing = 2 * 5.0 / (2**mesh - 1)
    assert 3 <= mesh <= 10
    assert spacing <= smearing / 6 or mesh == 10  # the tuners' largest exponent
    assert mesh == 3 or 2 * 5.0 / (2 ** (mesh - 1) - 1) > smearing / 6  # no finer


def test_missing_ase_gives_an_install_hint(monkeypatch, capsys):
    import sys as system

    from torchpme.cli import main

    for name in [m for m in system.modules if m == "ase" or m.startswith("ase.")]:
        monkeypatch.delitem(system.modules, name)
    monkeypatch.setitem(system.modules, "ase", None)  # import ase -> ImportError
    status = main(["--accuracy", "1e-3"])
    captured = capsys.readouterr()
    assert status != 0
    assert captured.err.strip() == (
        "torchpme: error: the torchpme command reads structures with ASE: "
        'pip install ase (or pip install "torchpme[cli]")'
    )
