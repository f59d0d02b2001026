"""Every public module's ``__all__`` names what it exports, and the compatible
module paths of torch-pme 0.5 resolve (API.md §1)."""

import importlib

import pytest

MODULES = [
    "torchpme",
    "torchpme.lib",
    "torchpme.lib.kspace_filter",
    "torchpme.lib.kvectors",
    "torchpme.lib.math",
    "torchpme.lib.mesh_interpolator",
    "torchpme.lib.splines",
    "torchpme.potentials",
    "torchpme.calculators",
    "torchpme.tuning",
    "torchpme.neighbors",
    "torchpme.probes",
    "torchpme.gaussian",
    "torchpme.qeq",
    "torchpme.testing",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    module = importlib.import_module(name)
    assert module.__all__, name
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing, missing
    assert len(set(module.__all__)) == len(module.__all__)


def test_compatible_paths():
    import torchpme

    expected = {
        "Calculator", "CalculatorDipole", "EwaldCalculator", "P3MCalculator",
        "PMECalculator", "CombinedPotential", "CoulombPotential",
        "InversePowerLawPotential", "Potential", "PotentialDipole", "SplinePotential",
    }  # fmt: skip
    assert expected <= set(torchpme.__all__)
    assert torchpme.__version__ == "0.5.0"
    assert torchpme.lib.kvectors.get_ns_mesh is torchpme.lib.get_ns_mesh
    assert set(torchpme.tuning.__all__) == {
        "tune_ewald", "tune_pme", "tune_p3m", "estimate_error"
    }  # fmt: skip
    for path, name in [
        ("torchpme.tuning.tuner", "GridSearchTuner"),
        ("torchpme.tuning.p3m", "A_COEF"),
        ("torchpme.potentials.coulomb", "_pbc_correction"),
        ("torchpme._utils", "_validate_parameters"),
        ("torchpme.prefactors", "eV_A"),
    ]:
        assert hasattr(importlib.import_module(path), name), (path, name)
