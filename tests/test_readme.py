"""The README's tour runs and computes what its comment says (CsCl Madelung)."""

import math
import re
import textwrap
from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"


def test_readme_tour():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace = {}
    exec(code, namespace)
    madelung = -1.762674773070 * 2 / math.sqrt(3)
    assert float(namespace["energy"]) == pytest.approx(madelung, abs=2e-6)
    torch.testing.assert_close(
        namespace["forces"], torch.zeros(2, 3, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_readme_quick_start_is_what_ci_runs():
    text = README.read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    install, test = (part.strip() for part in commands[1].split("&&"))
    assert test in ci
    assert install.split()[-1].strip('"') in ci


def test_readme_md_step_with_held_values():
    """The MD snippet (a PairList and a kept mesh filter) runs after the tour and
    gives the tour's energy and forces."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace = {}
    exec(blocks[0], namespace)
    expected = float(namespace["energy"]), namespace["forces"]
    exec(textwrap.dedent(blocks[1]), namespace)
    assert float(namespace["energy"]) == pytest.approx(expected[0], rel=1e-12)
    torch.testing.assert_close(namespace["forces"], expected[1], atol=1e-12, rtol=0)


def test_readme_slab_snippet_runs_after_the_tour():
    """The exact-slab snippet runs on the tour's crystal taken as a slab; its
    energy differs from the bulk one (a CsCl layer is not the crystal)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace = {}
    exec(blocks[0], namespace)
    bulk = float(namespace["energy"])
    exec(textwrap.dedent(blocks[2]), namespace)
    slab = float(namespace["energy"])
    assert math.isfinite(slab) and abs(slab - bulk) > 1e-3


def test_readme_probe_snippet_gives_the_ewald_potential():
    """The probe snippet's potential at (0.25, 0, 0) of the tour's CsCl equals an
    independent Ewald sum with the probe as an atom of charge 0."""
    import numpy as np
    from reference import ewald_potentials

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace = {}
    exec(blocks[0], namespace)
    exec(textwrap.dedent(blocks[3]), namespace)
    positions = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.25, 0.0, 0.0]])
    charges = np.array([[1.0], [-1.0], [0.0]])
    expected = 2.0 * ewald_potentials(positions, charges, np.eye(3))[2, 0]
    assert float(namespace["phi"][0, 0]) == pytest.approx(expected, rel=1e-5)
    assert namespace["field"].shape == (1, 1, 3)


def test_readme_distributed_snippet_in_one_process():
    """The distributed snippet, in one process (no group), gives the tour's CsCl
    Madelung energy and zero forces."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace = {}
    exec(blocks[0], namespace)
    exec(textwrap.dedent(blocks[4]), namespace)
    madelung = -1.762674773070 * 2 / math.sqrt(3)
    assert float(namespace["energy"]) == pytest.approx(madelung, abs=2e-6)
    forces = -namespace["positions"].grad
    torch.testing.assert_close(forces, torch.zeros_like(forces), atol=1e-5, rtol=0)
