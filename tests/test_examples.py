"""Every script in examples/ runs to completion (each asserts its own results)."""

import importlib.util
import pathlib
import sys
import tempfile

import pytest
from concurrent_scripts import ScriptRuns

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
NEEDS = {
    "02_ase_forces_and_md.py": ["ase"],
    "10_metatomic_export.py": ["ase", "metatomic.torch", "metatomic_ase"],
}


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.fixture(scope="module")
def runs(request):
    # examples must not depend on (or litter) the working folder
    with tempfile.TemporaryDirectory() as folder:
        # the training examples (the last ones) are the longest: started first,
        # they leave the short ones to fill the other worker
        commands = {
            p.name: [sys.executable, str(p)]
            for p in reversed(EXAMPLES)
            if all(importlib.util.find_spec(m) for m in NEEDS.get(p.name, []))
        }
        yield ScriptRuns.selected(request, commands, cwd=folder)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, runs):
    for module in NEEDS.get(script.name, []):
        pytest.importorskip(module)
    result = runs.result(script.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), "an example should print what it shows"
