"""The seed document's demo reproduces the seed's printed numbers (219 of them)."""

import subprocess
import sys
from pathlib import Path

import pytest

SEED = Path(__file__).parents[1].parent / "shared" / "seed"


@pytest.mark.skipif(not SEED.is_dir(), reason="needs ../shared/seed (the seed)")
def test_seed_demo_matches_expected_output(tmp_path):
    demo = subprocess.run(
        [sys.executable, str(SEED / "autograd-demo.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    check = subprocess.run(
        [sys.executable, str(SEED / "check_output.py")],
        input=demo.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "seed numbers matched: 219/219" in check.stdout, check.stdout
    assert check.returncode == 0
