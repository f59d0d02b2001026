"""Drop-in compatibility with torch-pme 0.5 where users' code relies on it.

The differential harness (``benchmarks/compat.py``) compares whole call corpora with
torch-pme 0.5 in its own environment; these tests pin the behaviours it found, here
without torch-pme: number-like arguments to the tuners, and a k-space filter that
holds NaN refused on the CPU by default.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from test_tuning import small_crystal

from torchpme import (
    CalculatorDipole,
    CoulombPotential,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
    SplinePotential,
)
from torchpme._utils import _validate_parameters
from torchpme.lib import KSpaceFilter, KSpaceKernel, MeshInterpolator
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme
from torchpme.tuning._validation import real_number
from torchpme.tuning.tuner import TunerBase, tune_cutoff

DTYPE = torch.float64

NUMBER_FORMS = {
    "float": 3.0,
    "int": 3,
    "numpy_float64": np.float64(3.0),
    "numpy_float32": np.float32(3.0),
    "numpy_int": np.int64(3),
    "tensor0d": torch.tensor([3.0, 4.0])[0],
    "tensor0d_float64_with_grad": torch.tensor(
        3.0, dtype=torch.float64
    ).requires_grad_(),
}


@pytest.mark.parametrize("form", list(NUMBER_FORMS))
def test_number_like_values_read_as_floats(form):
    assert real_number("cutoff", NUMBER_FORMS[form]) == 3.0


@pytest.mark.parametrize(
    "value",
    [True, np.bool_(True), "3.0", None, torch.tensor([3.0]), torch.tensor(3 + 0j)],
    ids=["bool", "numpy_bool", "str", "none", "tensor1d", "complex"],
)
def test_values_that_are_not_real_numbers_are_refused(value):
    with pytest.raises(TypeError, match=r"cutoff.*a real number"):
        real_number("cutoff", value)


@pytest.mark.parametrize(
    ("tune", "options"),
    [
        (tune_ewald, {"ns_hi": 4}),
        (tune_pme, {"mesh_hi": 4, "nodes_hi": 4}),
        (tune_p3m, {"mesh_hi": 4, "nodes_hi": 3}),
    ],
    ids=["ewald", "pme", "p3m"],
)
def test_tuners_take_cutoffs_from_a_loop_over_a_tensor(tune, options):
    """torch-pme's own tuning tutorial loops over ``torch.tensor([...])``: each
    cutoff is a 0-dim tensor; the accuracy may be a NumPy float."""
    charges, cell, positions, indices, distances = small_crystal()
    reference = TunerBase(charges, cell, positions, 3.0, PMECalculator)
    for cutoff in torch.tensor([3.0, 3.5]):
        smearing, params, timing = tune(
            charges, cell, positions, cutoff, indices, distances,
            accuracy=np.float64(1e-2), **options,
        )  # fmt: skip
        expected = TunerBase(charges, cell, positions, float(cutoff), PMECalculator)
        assert smearing == pytest.approx(expected.estimate_smearing(1e-2), rel=1e-12)
        assert isinstance(smearing, float) and math.isfinite(timing)
        assert set(params) <= {"lr_wavelength", "mesh_spacing", "interpolation_nodes"}
    assert reference.cutoff == 3.0


def test_tune_cutoff_takes_tensor_cutoffs():
    charges, cell, positions, indices, distances = small_crystal()
    cutoff, _, _, _ = tune_cutoff(
        tune_ewald, charges, cell, positions, indices, distances,
        cutoffs=torch.tensor([3.0, 3.5]), accuracy=1e-2, ns_hi=4,
    )  # fmt: skip
    assert isinstance(cutoff, float) and cutoff in (3.0, 3.5)


class NaNKernel(KSpaceKernel):
    """A kernel that is NaN at k = 0 (0/0), as a careless custom kernel is."""

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        return k_sq / k_sq


class NaNCoulomb(CoulombPotential):
    def lr_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        return k_sq / k_sq


def test_a_filter_holding_nan_is_refused_on_the_cpu_by_default():
    cell = 4.0 * torch.eye(3, dtype=torch.float64)
    mesh_filter = KSpaceFilter(cell, torch.tensor([4, 4, 4]), NaNKernel())
    with pytest.raises(ValueError, match=r"NaN.*mesh_spacing"):
        mesh_filter.forward(torch.ones(1, 4, 4, 4, dtype=torch.float64))
    # a filter without NaN passes
    fine = KSpaceFilter(cell, torch.tensor([4, 4, 4]), CoulombPotential(smearing=1.0))
    fine.forward(torch.ones(1, 4, 4, 4, dtype=torch.float64))


@pytest.mark.parametrize("calculator", [PMECalculator, P3MCalculator])
def test_calculators_refuse_a_filter_holding_nan_on_the_cpu(calculator):
    charges, cell, positions, indices, distances = small_crystal()
    potential = NaNCoulomb(smearing=1.0)
    with pytest.raises(ValueError, match=r"k-space filter.*NaN"):
        calculator(potential, mesh_spacing=1.0)(
            charges, cell, positions, indices, distances
        )


# -- state dicts load into each other -------------------------------------------------


def test_state_dict_keys_are_torch_pme_s():
    """A checkpoint of torch-pme 0.5 loads with ``strict=True``: the same keys
    (API.md: splines keep plain tensors; P3M's filter keeps the difference table)."""
    r = torch.linspace(0.5, 5.0, 10, dtype=torch.float64)
    spline = SplinePotential(r, torch.exp(-r), smearing=1.0)
    assert set(spline.state_dict()) == {
        "r_grid", "y_grid", "k_grid", "yhat_grid", "smearing", "prefactor"
    }  # fmt: skip
    p3m = P3MCalculator(CoulombPotential(smearing=1.0), mesh_spacing=1.0)
    keys = {"potential.smearing", "potential.prefactor"}
    kernel = {f"kspace_filter.kernel.{k}" for k in ("smearing", "prefactor")}
    assert set(p3m.state_dict()) == keys | kernel | {"kspace_filter._diff_coeff"}
    assert set(PMECalculator(CoulombPotential(smearing=1.0), 1.0).state_dict()) == (
        keys | kernel
    )
    # the difference table of API.md §3.4 (row o − 1), -1/465 kept
    table = p3m.state_dict()["kspace_filter._diff_coeff"]
    assert table.shape == (6, 6) and table.dtype == torch.get_default_dtype()
    row4 = [Fraction(8, 5), Fraction(-4, 5), Fraction(8, 35), Fraction(-1, 35), 0, 0]
    assert table[3].tolist() == pytest.approx([float(x) for x in row4])
    assert float(table[5, 5]) == pytest.approx(-1 / 465)
    other = P3MCalculator(CoulombPotential(smearing=2.0), mesh_spacing=1.0)
    other.load_state_dict(p3m.state_dict(), strict=True)
    assert float(other.potential.smearing) == 1.0


# -- argument forms and exception types users rely on --------------------------------


@pytest.mark.parametrize(
    "nodes", [4, np.int64(4), torch.tensor(4)], ids=["int", "numpy", "tensor0d"]
)
def test_node_counts_may_be_numpy_or_tensor_integers(nodes):
    charges, cell, positions, indices, distances = small_crystal()
    expected = PMECalculator(CoulombPotential(smearing=1.0), 1.0, 4)(
        charges, cell, positions, indices, distances
    )
    for calculator in (PMECalculator, P3MCalculator):
        result = calculator(CoulombPotential(smearing=1.0), 1.0, nodes)(
            charges, cell, positions, indices, distances
        )
        if calculator is PMECalculator:
            torch.testing.assert_close(result, expected, rtol=0.0, atol=0.0)
    interpolator = MeshInterpolator(cell, torch.tensor([4, 4, 4]), nodes, "Lagrange")
    assert interpolator.interpolation_nodes == 4


def test_documented_exception_types_are_kept():
    """API.md: a 1-D ``positions`` fails with IndexError, a dipole calculator with a
    smearing but no wavelength with AssertionError; ours are also ValueErrors."""
    charges, cell, positions, indices, distances = small_crystal()
    for kind in (IndexError, ValueError):
        with pytest.raises(kind, match="positions"):
            _validate_parameters(charges, cell, positions[0], indices, distances)
    for kind in (AssertionError, ValueError):
        with pytest.raises(kind, match="lr_wavelength"):
            CalculatorDipole(PotentialDipole(smearing=1.0))


def test_mesh_interpolator_exposes_its_stencil():
    """API.md §3.3: node ``t`` of atom ``i`` is ``(x_indices[t, i], y_indices[t, i],
    z_indices[t, i])`` with weight ``W[x_shifts[t], i, 0] W[y_shifts[t], i, 1]
    W[z_shifts[t], i, 2]``: spreading by hand with them equals points_to_mesh."""
    cell = torch.tensor([[4.0, 0, 0], [0.5, 3.8, 0], [0.2, -0.3, 4.1]], dtype=DTYPE)
    ns = [5, 6, 7]
    generator = torch.Generator().manual_seed(1)
    positions = torch.rand(6, 3, dtype=DTYPE, generator=generator) @ cell
    values = torch.randn(6, 1, dtype=DTYPE, generator=generator)
    interpolator = MeshInterpolator(cell, torch.tensor(ns), 4, "Lagrange")
    interpolator.compute_weights(positions)
    w = interpolator.interpolation_weights
    weight = (
        w[interpolator.x_shifts, :, 0]
        * w[interpolator.y_shifts, :, 1]
        * w[interpolator.z_shifts, :, 2]
    )
    mesh = torch.zeros(ns, dtype=DTYPE)
    index = (interpolator.x_indices, interpolator.y_indices, interpolator.z_indices)
    mesh.index_put_(index, weight * values[:, 0], accumulate=True)
    torch.testing.assert_close(interpolator.points_to_mesh(values)[0], mesh)
    # the mesh is in the dtype of the cell, whatever the values' dtype
    assert interpolator.points_to_mesh(values.float()).dtype == DTYPE
