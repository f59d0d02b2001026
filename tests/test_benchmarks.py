"""The benchmark scripts still run (smallest cases, no timings asserted)."""

import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch.distributed as dist
from concurrent_scripts import ScriptRuns

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytest.importorskip("vesin")

ANY_MESH = {
    "cutoff": 5.0,
    "smearing": 1.0,
    "mesh_spacing": 1.0,
    "nodes": 4,
    "mesh_density": 1.0,
}


def _commands(folder: Path):
    """Every benchmark run of this module, named by a part of its test's name
    (the longest first)."""
    runs = {
        "any_mesh": ["calculators.py", "--methods", "p3m", "--sizes", "512",
                     "--repeat", "1", "--params", json.dumps(ANY_MESH), "--other",
                     sys.executable, "--rounds", "2", "--keep-freed-memory",
                     "--energy"],
        "training": ["training.py", "--sizes", "512", "--repeat", "1", "--rounds",
                     "1", "--own-distances", "--stress", "--json",
                     str(folder / "training.json")],
        "calculators": ["calculators.py", "--sizes", "512", "--repeat", "1",
                        "--accuracy", "--json", str(folder / "results.json")],
        "compat": ["compat.py", "--other", sys.executable, "--only",
                   "tuning.error_bounds_pme", "--markdown",
                   str(folder / "table.md")],
        "tuning": ["tuning.py", "--n-atoms", "512", "--cutoff", "5.0",
                   "--accuracy", "1e-2"],
        "kernels": ["kernels.py", "--method", "p3m", "--size", "512", "--steps",
                    "1"],
        "clusters": ["clusters.py", "--sizes", "150", "--repeat", "1"],
        "distributed": ["distributed.py", "--sizes", "2000", "--ranks", "1", "2",
                        "--memory-ranks", "1", "2", "--repeat", "1", "--warmup",
                        "0", "--json", str(folder / "distributed.json")],
    }  # fmt: skip
    return {
        name: [sys.executable, str(BENCHMARKS / argv[0]), *argv[1:]]
        for name, argv in runs.items()
    }


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as path:
        yield Path(path)


@pytest.fixture(scope="module")
def runs(request, folder):
    return ScriptRuns.selected(request, _commands(folder))


def _run(runs, name):
    result = runs.result(name)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_calculators_benchmark(runs, folder):
    output = folder / "results.json"
    text = _run(runs, "calculators")
    rows = json.loads(output.read_text())
    assert [row["case"][:2] for row in rows] == [["pme", 512], ["p3m", 512]]
    for row in rows:
        ours = row["ours"]
        assert ours["time_s"] > 0 and ours["library_time_s"] > 0
        # the fixed parameters of the issue are accurate to about 1e-4
        assert ours["rms_force_error_rel"] < 1e-3
    assert "lib ms" in text


@pytest.mark.slow
def test_calculators_benchmark_with_any_mesh(runs):
    text = _run(runs, "any_mesh")
    assert "p3m" in text and "failed" not in text
    row = text.splitlines()[-1].split()
    # ours against ours, alternated: times, memory and ratios are positive numbers
    assert len(row) == 15 and row[7] == "nan"  # no --accuracy
    assert all(float(value) > 0 for value in row[3:7] + row[8:])


@pytest.mark.slow
def test_tuning_benchmark(runs):
    text = _run(runs, "tuning")
    lines = [line for line in text.splitlines() if line.startswith("tune_")]
    assert [line.split()[0] for line in lines] == ["tune_pme", "tune_p3m"]
    for line in lines:
        # the picks meet the requested accuracy (absolute RMS force error)
        error = float(line.rsplit("force error", 1)[1])
        assert error < 1e-2


def test_kernels_profile_names_the_largest_operators(runs):
    text = _run(runs, "kernels")
    lines = [line for line in text.splitlines() if " ms " in line and "%" in line]
    assert text.startswith("p3m N = 512 float64 on cpu")
    assert len(lines) == 15
    shares = [float(line.split("%")[0].split()[-1]) for line in lines]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.0


@pytest.mark.slow
def test_training_benchmark(runs, folder):
    output = folder / "training.json"
    text = _run(runs, "training")
    rows = json.loads(output.read_text())
    assert [(row["method"], row["size"]) for row in rows] == [
        ("pme", 512),
        ("p3m", 512),
    ]
    for row in rows:
        assert row["potentials"]["time_s"] > 0 and row["energy"]["time_s"] > 0
    assert "energy ms" in text


@pytest.mark.slow
def test_clusters_benchmark(runs):
    text = _run(runs, "clusters")
    rows = [line.split() for line in text.splitlines() if line[:1] != "#"][1:]
    assert [row[1] for row in rows] == ["direct", "pme", "p3m", "pme-box"]
    # the mesh methods' force errors against the direct sum
    assert all(float(row[3]) < 1e-3 for row in rows[1:])


@pytest.mark.slow
def test_distributed_benchmark(runs, folder):
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("the gloo backend of torch.distributed is missing")
    _run(runs, "distributed")
    result = json.loads((folder / "distributed.json").read_text())
    (row,) = result["measured"]
    assert row["n_atoms"] == 2000 and row["single_s"] > 0
    for ranks in row["ranks"].values():
        assert ranks["step_s"] > 0 and ranks["energy_rel_error"] < 1e-10
    # the model of the traffic agrees with the bytes counted in the collectives
    traffic = row["traffic"]["2"]
    for kind in ["halo", "transpose", "ghosts", "total"]:
        measured = traffic["measured"][kind]
        assert measured > 0
        assert traffic["model"][kind] == pytest.approx(measured, rel=0.1), kind
    # a rank's arrays shrink with the ranks
    assert row["memory"]["2"]["sum"] < row["memory"]["1"]["sum"]
    assert len(result["paper"]) == 12


def test_compat_harness_compares_two_interpreters(runs, folder):
    """Against itself every call agrees; the comparison itself is checked below."""
    table = folder / "table.md"
    text = _run(runs, "compat")
    assert "2 calls compared, 2 agree, 0 differ on purpose, 0 differ" in text
    assert table.read_text().startswith("2 calls compared")


def test_compat_comparison_finds_differences():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import compat
        from compat_cases import Case
    finally:
        sys.path.remove(str(BENCHMARKS))
    import numpy as np

    def tensor(values, dtype="torch.float64"):
        values = np.asarray(values, dtype=float)
        return ("tensor", dtype, values.shape, values)

    same = tensor([1.0, 2.0])
    assert compat.differences(same, tensor([1.0, 2.0]), 1e-10, 1e-12) == []
    assert compat.differences(same, tensor([1.0, 2.0 + 1e-6]), 1e-10, 1e-12)
    assert compat.differences(same, tensor([1.0, 2.0], "torch.float32"), 1e-10, 0.0)
    assert compat.differences(same, tensor([1.0]), 1e-10, 1e-12)
    # float32: rounding of the largest entry is not a difference
    single = tensor([1e3, 1e-3], "torch.float32")
    close = tensor([1e3, 1.01e-3], "torch.float32")
    assert compat.differences(single, close, 1e-10, 1e-12) == []
    # a deliberate difference is bounded relative to the largest entry
    far = tensor([1.0, 2.1])
    assert compat.differences(same, far, 0.0, 0.1, scaled=True) == []
    assert compat.differences(same, far, 0.0, 0.01, scaled=True)
    bases = ["ShapeIndexError", "IndexError"]
    raised = {"raises": "ShapeIndexError", "bases": bases, "message": ""}
    case = Case("c", None, 1e-10, 1e-12, None, None)
    assert compat.compare(case, raised, {"raises": "IndexError", "message": ""}) == []
    assert compat.compare(case, raised, {"raises": "TypeError", "message": ""})
