"""The unit prefactors recomputed from CODATA constants (scipy.constants)."""

import math

import pytest
import scipy.constants

from torchpme import prefactors

# ε₀ of CODATA 2018, from which the published values were derived; e and N_A are
# exact in the 2019 SI and the same in every later CODATA release
EPSILON_0_CODATA_2018 = 8.8541878128e-12


def _recompute(epsilon_0):
    e, n_a = scipy.constants.e, scipy.constants.N_A
    si = e**2 / (4 * math.pi * epsilon_0)
    ev_a = si / e / scipy.constants.angstrom
    return {
        "SI": si,
        "eV_A": ev_a,
        "kcalmol_A": ev_a * e * n_a / scipy.constants.calorie / 1000,
        "kJmol": ev_a * e * n_a / 1000,
    }


@pytest.mark.parametrize("name", ["SI", "eV_A", "kcalmol_A", "kJmol"])
def test_prefactors_from_codata(name):
    assert getattr(prefactors, name) == pytest.approx(
        _recompute(EPSILON_0_CODATA_2018)[name], rel=1e-14
    )
    # the installed SciPy may carry a newer CODATA ε₀ (2022 differs by 7e-10)
    assert getattr(prefactors, name) == pytest.approx(
        _recompute(scipy.constants.epsilon_0)[name], rel=1e-8
    )


def test_all_names_exist():
    assert sorted(prefactors.__all__) == sorted(["SI", "eV_A", "kcalmol_A", "kJmol"])
    for name in prefactors.__all__:
        assert isinstance(getattr(prefactors, name), float)
