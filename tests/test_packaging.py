"""The package builds as an sdist and a wheel, and the wheel installed in a fresh
virtual environment imports and runs its command (what a user gets from pip).

The environment sees this interpreter's packages (PyTorch and the optional
dependencies are not downloaded again) but its own ``site-packages`` comes
first, so ``import torchpme`` must find the installed wheel, not this checkout.
"""

import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_environment(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    # the sdist first, then the wheel from it: the wheel holds what the sdist does
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], tmp_path)
    (sdist,) = dist.glob("torchpme-*.tar.gz")
    (wheel,) = dist.glob("torchpme-*.whl")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for part in ("pyproject.toml", "README.md", "src/torchpme/__init__.py"):
        assert any(name.endswith(part) for name in names), part

    environment = tmp_path / "env"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(environment)
    python = environment / "bin" / "python"
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], tmp_path)
    where = _run(
        [
            python,
            "-c",
            "import torchpme; print(torchpme.__file__, torchpme.__version__)",
        ],
        tmp_path,
    )
    assert str(environment) in where, where
    # the console script of the wheel runs its main job on the embedded structure
    output = _run([environment / "bin" / "torchpme"], tmp_path)
    assert "Madelung check" in output and output.rstrip().endswith("OK")
