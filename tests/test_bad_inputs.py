"""Bad inputs: every public entry point we can reach × every kind of bad input.

Entry points: the four calculators (and ``CalculatorDipole``), the potentials,
``torchpme.lib`` (``MeshInterpolator``, ``KSpaceFilter``, ``P3MKSpaceFilter``,
``get_ns_mesh``, the k-vector functions), the tuners ``torchpme.tuning.tune_*``,
the ASE calculator ``torchpme.ase`` and the command line ``torchpme.cli.main``.
Kinds: wrong shape, wrong dtype, NaN/inf positions or charges, singular cells,
zero / negative / non-finite smearing, mesh spacing, cutoff, accuracy and
wavelength, neighbour indices out of range or negative, empty systems and single
atoms.

The contract tested:

* a bad input raises ``ValueError`` or ``TypeError`` (``NotImplementedError`` for
  an exponent the tuners do not support, as specified) whose message names the
  argument, and for calculators before any computation (the real- and
  reciprocal-space parts are spied on);
* checks that read tensor values (NaN/inf, index ranges) run in calculators and
  ``lib`` only with ``torchpme.set_value_checks(True)``; a singular 3x3 cell is
  always rejected on CPU by methods that use the cell. With value checks off,
  only what is promised is asserted: non-finite inputs that a method uses give
  non-finite outputs (never a finite number), indices out of range raise torch's
  ``IndexError``/``RuntimeError`` on CPU, and the direct calculator, which uses
  neither positions nor cell, gives its correct result;
* valid edge cases give documented results: an empty system gives an empty
  ``(0, C)`` result, a single atom in a periodic cell the Madelung energy of a
  simple-cubic lattice in a neutralising background.

Cases the library does not handle well yet are marked ``xfail(strict=True)``
with the reason (they fail loudly once fixed, so the mark gets removed).
"""

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from reference import ewald_potentials, neighbor_list, torch_neighbors

import torchpme
from torchpme import (
    Calculator,
    CalculatorDipole,
    CombinedPotential,
    CoulombPotential,
    EwaldCalculator,
    InversePowerLawPotential,
    P3MCalculator,
    PMECalculator,
    PotentialDipole,
    SplinePotential,
    cli,
)
from torchpme.ase import TorchPMECalculator
from torchpme.lib import (
    KSpaceFilter,
    MeshInterpolator,
    P3MKSpaceFilter,
    compute_batched_kvectors,
    generate_kvectors_for_ewald,
    generate_kvectors_for_mesh,
    get_ns_mesh,
)
from torchpme.tuning import tune_ewald, tune_p3m, tune_pme

DTYPE = torch.float64
NAN = float("nan")
INF = float("inf")
# Madelung constant of a simple-cubic lattice of unit charges in a neutralising
# background, E = ξ q² / (2L) per atom (Nijboer & De Wette, Physica 23, 309 (1957))
XI_SIMPLE_CUBIC = -2.837297479480619

METHODS = ["direct", "ewald", "pme", "p3m"]
KSPACE = ["ewald", "pme", "p3m"]


@pytest.fixture(autouse=True)
def _value_checks_off():
    torchpme.set_value_checks(False)
    yield
    torchpme.set_value_checks(False)


def make_calculator(method):
    if method == "direct":
        return Calculator(CoulombPotential())
    potential = CoulombPotential(smearing=0.5)
    if method == "ewald":
        return EwaldCalculator(potential, lr_wavelength=0.3)
    if method == "pme":
        return PMECalculator(potential, mesh_spacing=0.4, interpolation_nodes=6)
    return P3MCalculator(potential, mesh_spacing=0.4, interpolation_nodes=5)


def spied(calculator):
    """The calculator, and a list that records calls of its computing parts."""
    calls = []
    for name in ("_compute_rspace", "_compute_kspace"):
        original = getattr(calculator, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(calculator, name, wrapper)
    return calculator, calls


def base_inputs():
    """A valid 3-atom, 2-channel system: the inputs of ``Calculator.forward``."""
    positions = torch.tensor(
        [[0.1, 0.2, 0.3], [1.4, 1.1, 0.9], [2.2, 0.4, 1.8]], dtype=DTYPE
    )
    charges = torch.tensor([[1.0, 0.5], [-0.4, -0.5], [-0.6, 0.0]], dtype=DTYPE)
    cell = torch.tensor(
        [[3.2, 0.0, 0.0], [0.3, 3.0, 0.0], [0.1, -0.2, 3.4]], dtype=DTYPE
    )
    indices, distances = torch_neighbors(positions, cell, 2.5)
    return {
        "charges": charges,
        "cell": cell,
        "positions": positions,
        "neighbor_indices": indices,
        "neighbor_distances": distances,
    }


def changed(**changes):
    """A mutation of the base inputs: each value is a function of the inputs."""

    def mutate(inputs):
        return {**inputs, **{key: value(inputs) for key, value in changes.items()}}

    return mutate


def assert_names(error, argument):
    assert argument in str(error), f"message does not name {argument}: {error}"


# -- calculators: metadata, checked always --------------------------------------

N_PAIRS = len(base_inputs()["neighbor_indices"])

FORWARD_METADATA = {
    # wrong shapes
    "positions-1d": (changed(positions=lambda i: i["positions"][0]), "`positions`"),
    "positions-Nx2": (
        changed(positions=lambda i: i["positions"][:, :2]),
        "`positions`",
    ),
    "positions-3d": (changed(positions=lambda i: i["positions"][None]), "`positions`"),
    "cell-1d": (changed(cell=lambda i: i["cell"][0]), "`cell`"),
    "cell-3x4": (
        changed(cell=lambda i: torch.cat([i["cell"], i["cell"][:, :1]], dim=1)),
        "`cell`",
    ),
    "cell-batched": (changed(cell=lambda i: i["cell"][None]), "`cell`"),
    "charges-1d": (changed(charges=lambda i: i["charges"][:, 0]), "`charges`"),
    "charges-N+1": (
        changed(charges=lambda i: torch.cat([i["charges"], i["charges"][:1]])),
        "`charges`",
    ),
    "charges-3d": (changed(charges=lambda i: i["charges"][..., None]), "`charges`"),
    "indices-Px3": (
        changed(
            neighbor_indices=lambda i: torch.cat(
                [i["neighbor_indices"], i["neighbor_indices"][:, :1]], dim=1
            )
        ),
        "`neighbor_indices`",
    ),
    "indices-1d": (
        changed(neighbor_indices=lambda i: i["neighbor_indices"][:, 0]),
        "`neighbor_indices`",
    ),
    "distances-P+1": (
        changed(
            neighbor_distances=lambda i: torch.cat(
                [i["neighbor_distances"], i["neighbor_distances"][:1]]
            )
        ),
        "`neighbor_distances`",
    ),
    "distances-Px1": (
        changed(neighbor_distances=lambda i: i["neighbor_distances"][:, None]),
        "`neighbor_distances`",
    ),
    "periodic-2": (
        changed(periodic=lambda i: torch.ones(2, dtype=torch.bool)),
        "`periodic`",
    ),
    "pair_mask-P+1": (
        changed(pair_mask=lambda i: torch.ones(N_PAIRS + 1, dtype=torch.bool)),
        "`pair_mask`",
    ),
    "node_mask-N+1": (
        changed(node_mask=lambda i: torch.ones(4, dtype=torch.bool)),
        "`node_mask`",
    ),
    "kvectors-Kx2": (
        changed(kvectors=lambda i: torch.zeros(5, 2, dtype=DTYPE)),
        "`kvectors`",
    ),
    # wrong dtypes
    "positions-int64": (
        changed(positions=lambda i: i["positions"].to(torch.int64)),
        "`positions`",
    ),
    "positions-complex": (
        changed(positions=lambda i: i["positions"].to(torch.complex128)),
        "`positions`",
    ),
    "cell-float32": (changed(cell=lambda i: i["cell"].float()), "`cell`"),
    "charges-float32": (changed(charges=lambda i: i["charges"].float()), "`charges`"),
    "charges-int64": (
        changed(charges=lambda i: i["charges"].to(torch.int64)),
        "`charges`",
    ),
    "indices-float": (
        changed(neighbor_indices=lambda i: i["neighbor_indices"].to(DTYPE)),
        "`neighbor_indices`",
    ),
    "distances-float32": (
        changed(neighbor_distances=lambda i: i["neighbor_distances"].float()),
        "`neighbor_distances`",
    ),
    "pair_mask-float": (
        changed(pair_mask=lambda i: torch.ones(N_PAIRS, dtype=DTYPE)),
        "`pair_mask`",
    ),
    "node_mask-int": (
        changed(node_mask=lambda i: torch.ones(3, dtype=torch.int64)),
        "`node_mask`",
    ),
    "kvectors-float32": (
        changed(kvectors=lambda i: torch.zeros(5, 3, dtype=torch.float32)),
        "`kvectors`",
    ),
}

SINGULAR_CELLS = {
    "cell-zeros": lambda cell: torch.zeros_like(cell),
    "cell-repeated-row": lambda cell: torch.stack([cell[0], cell[1], cell[1]]),
    "cell-coplanar": lambda cell: torch.stack([cell[0], cell[1], cell[0] + cell[1]]),
    "cell-nan": lambda cell: cell * NAN,
}


@pytest.mark.parametrize("checks", [False, True], ids=["checks-off", "checks-on"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(FORWARD_METADATA))
def test_calculator_metadata(case, method, checks):
    torchpme.set_value_checks(checks)
    mutate, argument = FORWARD_METADATA[case]
    calculator, calls = spied(make_calculator(method))
    with pytest.raises((ValueError, TypeError)) as error:
        calculator(**mutate(base_inputs()))
    assert_names(error.value, argument)
    assert calls == [], "validation must come before any computation"


@pytest.mark.parametrize("checks", [False, True], ids=["checks-off", "checks-on"])
@pytest.mark.parametrize("method", KSPACE)
@pytest.mark.parametrize("case", list(SINGULAR_CELLS))
def test_kspace_calculator_singular_cell(case, method, checks):
    """Always rejected on CPU (a 3x3 determinant), whatever the switch."""
    torchpme.set_value_checks(checks)
    inputs = base_inputs()
    inputs["cell"] = SINGULAR_CELLS[case](inputs["cell"])
    calculator, calls = spied(make_calculator(method))
    with pytest.raises(ValueError) as error:
        calculator(**inputs)
    assert_names(error.value, "`cell`")
    assert calls == []


@pytest.mark.parametrize("case", [c for c in SINGULAR_CELLS if c != "cell-nan"])
@pytest.mark.parametrize("checks", [False, True], ids=["checks-off", "checks-on"])
def test_direct_calculator_ignores_cell(checks, case):
    """The direct sum uses only distances: any cell, e.g. zeros, is valid."""
    torchpme.set_value_checks(checks)
    inputs = base_inputs()
    expected = make_calculator("direct")(**inputs)
    inputs["cell"] = SINGULAR_CELLS[case](inputs["cell"])
    torch.testing.assert_close(make_calculator("direct")(**inputs), expected)


# -- calculators: values, checked with set_value_checks(True) --------------------


def _at(tensor_name, index, value):
    def mutate(inputs):
        tensor = inputs[tensor_name].clone()
        tensor[index] = value
        return {**inputs, tensor_name: tensor}

    return mutate


FORWARD_VALUES = {
    "positions-nan": (_at("positions", (1, 0), NAN), "`positions`"),
    "positions-inf": (_at("positions", (2, 1), INF), "`positions`"),
    "charges-nan": (_at("charges", (0, 1), NAN), "`charges`"),
    "charges-inf": (_at("charges", (2, 0), -INF), "`charges`"),
    "distances-nan": (_at("neighbor_distances", 0, NAN), "`neighbor_distances`"),
    "indices-too-large": (_at("neighbor_indices", (0, 1), 3), "`neighbor_indices`"),
    "indices-negative": (_at("neighbor_indices", (0, 0), -1), "`neighbor_indices`"),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(FORWARD_VALUES))
def test_calculator_values_with_checks_on(case, method):
    torchpme.set_value_checks(True)
    mutate, argument = FORWARD_VALUES[case]
    calculator, calls = spied(make_calculator(method))
    with pytest.raises(ValueError) as error:
        calculator(**mutate(base_inputs()))
    assert_names(error.value, argument)
    assert calls == []


def test_direct_calculator_nan_cell_with_checks_on():
    torchpme.set_value_checks(True)
    inputs = base_inputs()
    inputs["cell"] = inputs["cell"] * NAN
    with pytest.raises(ValueError) as error:
        make_calculator("direct")(**inputs)
    assert_names(error.value, "`cell`")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(FORWARD_VALUES))
def test_calculator_values_with_checks_off(case, method):
    """Documented behaviour without value checks (the default)."""
    mutate, _ = FORWARD_VALUES[case]
    inputs = mutate(base_inputs())
    calculator = make_calculator(method)
    if case.startswith("indices"):
        # index ranges are checked on CPU tensors always (no synchronisation
        # there); on accelerators only with value checks on
        with pytest.raises(ValueError) as error:
            calculator(**inputs)
        assert_names(error.value, "`neighbor_indices`")
    elif case.startswith("positions") and method == "direct":
        # positions are not used by the direct sum: the correct result
        expected = calculator(**base_inputs())
        torch.testing.assert_close(calculator(**inputs), expected)
    else:
        # non-finite inputs propagate: never a finite (wrong) result
        assert not bool(torch.isfinite(calculator(**inputs)).all())


# -- calculators: valid edge cases -----------------------------------------------


@pytest.mark.parametrize("checks", [False, True], ids=["checks-off", "checks-on"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_empty_system(method, dtype, checks):
    torchpme.set_value_checks(checks)
    cell = torch.eye(3, dtype=dtype) * 3.0
    result = make_calculator(method)(
        torch.zeros(0, 2, dtype=dtype),
        cell,
        torch.zeros(0, 3, dtype=dtype),
        torch.zeros(0, 2, dtype=torch.int64),
        torch.zeros(0, dtype=dtype),
    )
    assert result.shape == (0, 2)
    assert result.dtype == dtype


def single_atom_energy(calculator, cell, charge, cutoff):
    positions = torch.tensor([[0.3, -0.2, 0.5]], dtype=DTYPE)
    indices, distances = torch_neighbors(positions, cell, cutoff)
    charges = torch.tensor([[charge]], dtype=DTYPE)
    return float(
        (charges * calculator(charges, cell, positions, indices, distances)).sum()
    )


@pytest.mark.parametrize("cutoff", [2.0, 4.5], ids=["no-images", "with-images"])
@pytest.mark.parametrize("method", KSPACE)
def test_single_atom_simple_cubic_madelung(method, cutoff):
    """One ion of charge q in a cubic cell: E = ξ q² / (2L)."""
    length, charge = 3.7, 1.3
    cell = length * torch.eye(3, dtype=DTYPE)
    value = single_atom_energy(make_calculator(method), cell, charge, cutoff)
    expected = XI_SIMPLE_CUBIC * charge**2 / (2 * length)
    # converged to about 2e-9 (Ewald) and 2e-5 (mesh) with these settings
    assert value == pytest.approx(expected, rel={"ewald": 1e-8}.get(method, 1e-4))


@pytest.mark.parametrize("method", KSPACE)
def test_single_atom_triclinic_against_numpy_ewald(method):
    cell = base_inputs()["cell"]
    value = single_atom_energy(make_calculator(method), cell, -0.8, 2.5)
    reference = ewald_potentials(np.array([[0.3, -0.2, 0.5]]), [[-0.8]], cell.numpy())
    assert value == pytest.approx(-0.8 * reference[0, 0], rel=1e-5)


def test_single_atom_direct_sums_its_images():
    length, cutoff = 2.0, 4.5
    cell = length * torch.eye(3, dtype=DTYPE)
    value = single_atom_energy(make_calculator("direct"), cell, 1.5, cutoff)
    shifts = np.array(np.meshgrid(*[range(-3, 4)] * 3, indexing="ij")).reshape(3, -1).T
    r = length * np.linalg.norm(shifts, axis=1)
    inside = (r > 0) & (r < cutoff)
    assert value == pytest.approx(0.5 * 1.5**2 * np.sum(1.0 / r[inside]), rel=1e-12)


# -- CalculatorDipole --------------------------------------------------------------


def dipole_inputs():
    inputs = base_inputs()
    pairs, shifts = neighbor_list(
        inputs["positions"].numpy(), inputs["cell"].numpy(), 2.5
    )
    positions, cell = inputs["positions"], inputs["cell"]
    vectors = (
        positions[pairs[:, 1]]
        + torch.from_numpy(shifts) @ cell
        - positions[pairs[:, 0]]
    )
    return {
        "dipoles": torch.tensor(
            [[0.1, 0.0, -0.2], [0.0, 0.3, 0.1], [-0.2, 0.1, 0.0]], dtype=DTYPE
        ),
        "cell": cell,
        "positions": positions,
        "neighbor_indices": torch.from_numpy(pairs),
        "neighbor_vectors": vectors,
    }


DIPOLE_CASES = {
    "dipoles-Nx2": (
        changed(dipoles=lambda i: i["dipoles"][:, :2]),
        ValueError,
        "`dipoles`",
    ),
    "dipoles-1d": (changed(dipoles=lambda i: i["dipoles"][0]), ValueError, "`dipoles`"),
    "dipoles-float32": (
        changed(dipoles=lambda i: i["dipoles"].float()),
        TypeError,
        "`dipoles`",
    ),
    "vectors-Px2": (
        changed(neighbor_vectors=lambda i: i["neighbor_vectors"][:, :2]),
        ValueError,
        "`neighbor_vectors`",
    ),
    "vectors-1d": (
        changed(neighbor_vectors=lambda i: i["neighbor_vectors"][:, 0]),
        ValueError,
        "`neighbor_vectors`",
    ),
    "cell-singular": (changed(cell=lambda i: 0.0 * i["cell"]), ValueError, "`cell`"),
    "positions-Nx2": (
        changed(positions=lambda i: i["positions"][:, :2]),
        ValueError,
        "`positions`",
    ),
}


@pytest.mark.parametrize("case", list(DIPOLE_CASES))
def test_dipole_calculator_bad_inputs(case):
    mutate, exception, argument = DIPOLE_CASES[case]
    calculator = CalculatorDipole(PotentialDipole(smearing=0.5), lr_wavelength=0.4)
    with pytest.raises(exception) as error:
        calculator(**mutate(dipole_inputs()))
    assert_names(error.value, argument)


def test_dipole_calculator_empty_system():
    calculator = CalculatorDipole(PotentialDipole(smearing=0.5), lr_wavelength=0.4)
    result = calculator(
        torch.zeros(0, 3, dtype=DTYPE),
        3.0 * torch.eye(3, dtype=DTYPE),
        torch.zeros(0, 3, dtype=DTYPE),
        torch.zeros(0, 2, dtype=torch.int64),
        torch.zeros(0, 3, dtype=DTYPE),
    )
    assert result.shape == (0, 3)


# -- constructors: potentials and calculators --------------------------------------

grid = torch.linspace(0.5, 5.0, 10, dtype=DTYPE)

CONSTRUCTORS = {
    **{
        f"coulomb-smearing={v}": (
            lambda v=v: CoulombPotential(smearing=v),
            "`smearing`",
        )
        for v in [0.0, -1.0, NAN, INF]
    },
    **{
        f"coulomb-exclusion_radius={v}": (
            lambda v=v: CoulombPotential(0.5, exclusion_radius=v),
            "`exclusion_radius`",
        )
        for v in [0.0, -1.0, NAN]
    },
    "coulomb-exclusion_degree=0": (
        lambda: CoulombPotential(0.5, exclusion_radius=1.0, exclusion_degree=0),
        "`exclusion_degree`",
    ),
    "coulomb-exclusion_degree=1.5": (
        lambda: CoulombPotential(0.5, exclusion_radius=1.0, exclusion_degree=1.5),
        "`exclusion_degree`",
    ),
    **{
        f"coulomb-prefactor={v}": (
            lambda v=v: CoulombPotential(0.5, prefactor=v),
            "`prefactor`",
        )
        for v in [NAN, INF]
    },
    **{
        f"power-exponent={p}": (
            lambda p=p: InversePowerLawPotential(p, smearing=0.5),
            "`exponent`",
        )
        for p in [0, -1, 2.5, 7]
    },
    "power-smearing=0": (
        lambda: InversePowerLawPotential(2, smearing=0.0),
        "`smearing`",
    ),
    "spline-one-point": (
        lambda: SplinePotential(grid[:1], grid[:1]),
        "`r_grid`",
    ),
    "spline-length-mismatch": (
        lambda: SplinePotential(grid, grid[:-1]),
        "`y_grid`",
    ),
    "spline-unsorted": (
        lambda: SplinePotential(grid.flip(0), 1.0 / grid),
        "`r_grid`",
    ),
    "spline-nan": (
        lambda: SplinePotential(grid, torch.where(grid > 2, NAN, 1.0 / grid)),
        "y_grid",
    ),
    "spline-reciprocal-negative-r": (
        lambda: SplinePotential(grid - 1.0, 1.0 / grid, reciprocal=True),
        "`r_grid`",
    ),
    "combined-empty": (lambda: CombinedPotential([]), "`potentials`"),
    "combined-not-a-potential": (
        lambda: CombinedPotential(["coulomb"]),
        "`potentials`",
    ),
    "combined-mixed": (
        lambda: CombinedPotential(
            [CoulombPotential(smearing=1.0), CoulombPotential()], smearing=1.0
        ),
        "`potentials`",
    ),
    "combined-weights-shape": (
        lambda: CombinedPotential(
            [CoulombPotential(), CoulombPotential()], initial_weights=torch.ones(3)
        ),
        "`initial_weights`",
    ),
    "dipole-potential-smearing=0": (
        lambda: PotentialDipole(smearing=0.0),
        "`smearing`",
    ),
    "dipole-potential-epsilon=-1": (lambda: PotentialDipole(epsilon=-1.0), "`epsilon`"),
    "calculator-not-a-potential": (lambda: Calculator("coulomb"), "`potential`"),
    "ewald-without-smearing": (
        lambda: EwaldCalculator(CoulombPotential(), lr_wavelength=0.5),
        "`potential`",
    ),
    **{
        f"ewald-lr_wavelength={v}": (
            lambda v=v: EwaldCalculator(CoulombPotential(0.5), lr_wavelength=v),
            "`lr_wavelength`",
        )
        for v in [0.0, -1.0, NAN, INF]
    },
    **{
        f"{name}-mesh_spacing={v}": (
            lambda v=v, cls=cls: cls(CoulombPotential(0.5), mesh_spacing=v),
            "`mesh_spacing`",
        )
        for v in [0.0, -1.0, NAN, INF]
        for name, cls in [("pme", PMECalculator), ("p3m", P3MCalculator)]
    },
    **{
        f"pme-interpolation_nodes={n}": (
            lambda n=n: PMECalculator(
                CoulombPotential(0.5), 0.5, interpolation_nodes=n
            ),
            "`interpolation_nodes`",
        )
        for n in [2, 8]
    },
    **{
        f"p3m-interpolation_nodes={n}": (
            lambda n=n: P3MCalculator(
                CoulombPotential(0.5), 0.5, interpolation_nodes=n
            ),
            "`interpolation_nodes`",
        )
        for n in [0, 6]
    },
    "pme-fixed_mesh-zero": (
        lambda: PMECalculator(CoulombPotential(0.5), 0.5, fixed_mesh=[0, 4, 4]),
        "`fixed_mesh`",
    ),
    "pme-fixed_mesh-two": (
        lambda: PMECalculator(CoulombPotential(0.5), 0.5, fixed_mesh=[4, 4]),
        "`fixed_mesh`",
    ),
    "pme-fixed_mesh-fraction": (
        lambda: PMECalculator(CoulombPotential(0.5), 0.5, fixed_mesh=[4, 4.5, 4]),
        "`fixed_mesh`",
    ),
    "p3m-fixed_mesh-text": (
        lambda: P3MCalculator(CoulombPotential(0.5), 0.5, fixed_mesh="16"),
        "`fixed_mesh`",
    ),
    "dipole-calculator-not-a-dipole-potential": (
        lambda: CalculatorDipole(CoulombPotential()),
        "`potential`",
    ),
    "dipole-calculator-wavelength-without-smearing": (
        lambda: CalculatorDipole(PotentialDipole(), lr_wavelength=0.5),
        "`lr_wavelength`",
    ),
    "dipole-calculator-lr_wavelength=0": (
        lambda: CalculatorDipole(PotentialDipole(smearing=0.5), lr_wavelength=0.0),
        "`lr_wavelength`",
    ),
}


@pytest.mark.parametrize("case", list(CONSTRUCTORS))
def test_constructor_bad_parameters(case):
    build, argument = CONSTRUCTORS[case]
    with pytest.raises((ValueError, TypeError)) as error:
        build()
    assert_names(error.value, argument)


# -- torchpme.lib -------------------------------------------------------------------

CELL = base_inputs()["cell"]
NS = torch.tensor([8, 8, 8])
KERNEL = CoulombPotential(smearing=0.5)


def _interpolator():
    interpolator = MeshInterpolator(CELL, NS, 4, "Lagrange")
    interpolator.compute_weights(base_inputs()["positions"])
    return interpolator


LIB_CASES = {
    "interpolator-cell-2x2": (
        lambda: MeshInterpolator(torch.eye(2, dtype=DTYPE), NS, 4, "Lagrange"),
        "`cell`",
    ),
    "interpolator-cell-singular": (
        lambda: MeshInterpolator(torch.zeros(3, 3, dtype=DTYPE), NS, 4, "Lagrange"),
        "`cell`",
    ),
    "interpolator-cell-nan": (
        lambda: MeshInterpolator(CELL * NAN, NS, 4, "Lagrange"),
        "`cell`",
    ),
    "interpolator-ns-shape": (
        lambda: MeshInterpolator(CELL, NS[:2], 4, "Lagrange"),
        "`ns_mesh`",
    ),
    "interpolator-ns-zero": (
        lambda: MeshInterpolator(CELL, torch.tensor([8, 0, 8]), 4, "Lagrange"),
        "`ns_mesh`",
    ),
    "interpolator-ns-negative": (
        lambda: MeshInterpolator(CELL, torch.tensor([8, -8, 8]), 4, "Lagrange"),
        "`ns_mesh`",
    ),
    "interpolator-method": (
        lambda: MeshInterpolator(CELL, NS, 4, "spline"),
        "`method`",
    ),
    "interpolator-nodes": (
        lambda: MeshInterpolator(CELL, NS, 2, "Lagrange"),
        "`interpolation_nodes`",
    ),
    "interpolator-positions-shape": (
        lambda: _interpolator().compute_weights(torch.zeros(3, dtype=DTYPE)),
        "`positions`",
    ),
    "interpolator-positions-float32": (
        lambda: _interpolator().compute_weights(torch.zeros(2, 3)),
        "`positions`",
    ),
    "interpolator-values-rows": (
        lambda: _interpolator().points_to_mesh(torch.ones(4, 1, dtype=DTYPE)),
        "`particle_weights`",
    ),
    "interpolator-values-1d": (
        lambda: _interpolator().points_to_mesh(torch.ones(3, dtype=DTYPE)),
        "`particle_weights`",
    ),
    "interpolator-mesh-shape": (
        lambda: _interpolator().mesh_to_points(torch.ones(1, 8, 8, 9, dtype=DTYPE)),
        "`mesh_vals`",
    ),
    "filter-fft_norm": (
        lambda: KSpaceFilter(CELL, NS, KERNEL, fft_norm="none"),
        "`fft_norm`",
    ),
    "filter-ifft_norm": (
        lambda: KSpaceFilter(CELL, NS, KERNEL, ifft_norm="none"),
        "`ifft_norm`",
    ),
    "filter-cell-2x2": (
        lambda: KSpaceFilter(torch.eye(2, dtype=DTYPE), NS, KERNEL),
        "`cell`",
    ),
    "filter-cell-singular": (
        lambda: KSpaceFilter(torch.zeros(3, 3, dtype=DTYPE), NS, KERNEL),
        "`cell`",
    ),
    "filter-ns-shape": (lambda: KSpaceFilter(CELL, NS[:2], KERNEL), "`ns_mesh`"),
    "filter-ns-zero": (
        lambda: KSpaceFilter(CELL, torch.tensor([0, 8, 8]), KERNEL),
        "`ns_mesh`",
    ),
    "filter-kernel": (lambda: KSpaceFilter(CELL, NS, "coulomb"), "`kernel`"),
    "filter-mesh-3d": (
        lambda: KSpaceFilter(CELL, NS, KERNEL)(torch.ones(8, 8, 8, dtype=DTYPE)),
        "`mesh_values`",
    ),
    "filter-mesh-shape": (
        lambda: KSpaceFilter(CELL, NS, KERNEL)(torch.ones(1, 8, 8, 7, dtype=DTYPE)),
        "`mesh_values`",
    ),
    "p3m-filter-mode": (
        lambda: P3MKSpaceFilter(CELL, NS, 3, KERNEL, mode=4),
        "`mode`",
    ),
    "p3m-filter-differential_order": (
        lambda: P3MKSpaceFilter(CELL, NS, 3, KERNEL, differential_order=0),
        "`differential_order`",
    ),
    "p3m-filter-nodes": (
        lambda: P3MKSpaceFilter(CELL, NS, 0, KERNEL),
        "`interpolation_nodes`",
    ),
    "ns_mesh-cell-shape": (
        lambda: get_ns_mesh(torch.eye(2, dtype=DTYPE), 0.5),
        "`cell`",
    ),
    "ns_mesh-cell-nan": (lambda: get_ns_mesh(CELL * NAN, 0.5), "`cell`"),
    **{
        f"ns_mesh-mesh_spacing={v}": (
            lambda v=v: get_ns_mesh(CELL, v),
            "`mesh_spacing`",
        )
        for v in [0.0, -1.0, NAN, INF]
    },
    **{
        f"{name}-{what}": (lambda f=f, args=args: f(*args), argument)
        for name, f in [
            ("kvectors-mesh", generate_kvectors_for_mesh),
            ("kvectors-ewald", generate_kvectors_for_ewald),
        ]
        for what, args, argument in [
            ("cell-shape", (CELL[0], NS), "`cell`"),
            ("cell-singular", (torch.zeros(3, 3, dtype=DTYPE), NS), "`cell`"),
            ("ns-shape", (CELL, NS[:2]), "`ns`"),
            ("ns-zero", (CELL, torch.tensor([0, 8, 8])), "`ns`"),
            ("ns-negative", (CELL, torch.tensor([8, -2, 8])), "`ns`"),
        ]
    },
    **{
        f"batched-kvectors-lr_wavelength={v}": (
            lambda v=v: compute_batched_kvectors(v, CELL[None]),
            "`lr_wavelength`",
        )
        for v in [0.0, -1.0, NAN, INF]
    },
    "batched-kvectors-cells-shape": (
        lambda: compute_batched_kvectors(0.5, CELL),
        "`cells`",
    ),
    "batched-kvectors-cells-singular": (
        lambda: compute_batched_kvectors(0.5, torch.zeros(2, 3, 3, dtype=DTYPE)),
        "`cells`",
    ),
}


@pytest.mark.parametrize("case", list(LIB_CASES))
def test_lib_bad_inputs(case):
    build, argument = LIB_CASES[case]
    with pytest.raises((ValueError, TypeError)) as error:
        build()
    assert_names(error.value, argument)


def test_interpolator_nan_positions_need_value_checks():
    interpolator = MeshInterpolator(CELL, NS, 4, "Lagrange")
    positions = base_inputs()["positions"].clone()
    positions[0, 0] = NAN
    interpolator.compute_weights(positions)  # off: not read
    assert not bool(torch.isfinite(interpolator.interpolation_weights).all())
    torchpme.set_value_checks(True)
    with pytest.raises(ValueError) as error:
        interpolator.compute_weights(positions)
    assert_names(error.value, "`positions`")


def test_interpolator_empty_system():
    interpolator = MeshInterpolator(CELL, NS, 4, "Lagrange")
    interpolator.compute_weights(torch.zeros(0, 3, dtype=DTYPE))
    mesh = interpolator.points_to_mesh(torch.zeros(0, 2, dtype=DTYPE))
    assert mesh.shape == (2, 8, 8, 8) and not bool(mesh.any())
    assert interpolator.mesh_to_points(torch.ones(2, 8, 8, 8, dtype=DTYPE)).shape == (
        0,
        2,
    )


# -- tuners --------------------------------------------------------------------------

TUNERS = {"ewald": tune_ewald, "pme": tune_pme, "p3m": tune_p3m}


def tuner_inputs():
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.5, 1.5, 1.5]], dtype=DTYPE)
    cell = 3.0 * torch.eye(3, dtype=DTYPE)
    indices, distances = torch_neighbors(positions, cell, 2.8)
    return {
        "charges": torch.tensor([[1.0], [-1.0]], dtype=DTYPE),
        "cell": cell,
        "positions": positions,
        "cutoff": 2.8,
        "neighbor_indices": indices,
        "neighbor_distances": distances,
    }


def _replace(**values):
    return lambda inputs: {**inputs, **values}


TUNER_CASES = {
    **{
        f"cutoff={v}": (_replace(cutoff=v), ValueError, "`cutoff`")
        for v in [0.0, -1.0, NAN, INF]
    },
    **{
        f"accuracy={v}": (_replace(accuracy=v), ValueError, "`accuracy`")
        for v in [0.0, -1e-3, NAN]
    },
    "positions-nan": (
        changed(positions=lambda i: i["positions"] * torch.tensor([[1.0], [NAN]])),
        ValueError,
        "`positions`",
    ),
    "charges-inf": (
        changed(charges=lambda i: i["charges"] * INF),
        ValueError,
        "`charges`",
    ),
    "cell-singular": (
        changed(cell=lambda i: torch.zeros(3, 3, dtype=DTYPE)),
        ValueError,
        "`cell`",
    ),
    "empty-system": (
        _replace(
            positions=torch.zeros(0, 3, dtype=DTYPE),
            charges=torch.zeros(0, 1, dtype=DTYPE),
            neighbor_indices=torch.zeros(0, 2, dtype=torch.int64),
            neighbor_distances=torch.zeros(0, dtype=DTYPE),
        ),
        ValueError,
        "`positions`",
    ),
    "positions-Nx2": (
        changed(positions=lambda i: i["positions"][:, :2]),
        ValueError,
        "`positions`",
    ),
    "charges-float32": (
        changed(charges=lambda i: i["charges"].float()),
        TypeError,
        "`charges`",
    ),
    "exponent=2": (_replace(exponent=2), NotImplementedError, "exponent"),
    "indices-too-large": (
        changed(neighbor_indices=lambda i: i["neighbor_indices"] + 2),
        ValueError,
        "`neighbor_indices`",
    ),
    "indices-negative": (
        changed(neighbor_indices=lambda i: i["neighbor_indices"] - 2),
        ValueError,
        "`neighbor_indices`",
    ),
}


def _split(value):
    """(values, marks) of a plain tuple or of a ``pytest.param``."""
    if hasattr(value, "marks"):
        return value.values, value.marks
    return value, ()


def _tuner_params():
    for tuner in TUNERS:
        for case, value in TUNER_CASES.items():
            values, marks = _split(value)
            yield pytest.param(tuner, *values, marks=marks, id=f"{tuner}-{case}")


@pytest.mark.parametrize(("tuner", "mutate", "exception", "argument"), _tuner_params())
def test_tuner_bad_inputs(tuner, mutate, exception, argument):
    with pytest.raises(exception) as error:
        TUNERS[tuner](**mutate(tuner_inputs()))
    assert_names(error.value, argument)


# -- the ASE calculator --------------------------------------------------------------


def rocksalt():
    return bulk("NaCl", "rocksalt", a=5.64)


NACL = {"Na": 1.0, "Cl": -1.0}

ASE_CONSTRUCTOR = {
    "method": ({"method": "bogus"}, "`method`"),
    **{f"accuracy={v}": ({"accuracy": v}, "`accuracy`") for v in [0, -1, NAN, "x"]},
    "dtype-int32": ({"dtype": torch.int32}, "`dtype`"),
    "retune_threshold=-1": ({"retune_threshold": -1}, "`retune_threshold`"),
}

ASE_CALCULATION = {
    **{f"cutoff={v}": ({"cutoff": v}, "`cutoff`") for v in [0.0, -1.0, NAN]},
    **{f"smearing={v}": ({"smearing": v}, "`smearing`") for v in [0.0, -1.0]},
    "lr_wavelength=-1": (
        {"method": "ewald", "params": {"lr_wavelength": -1.0}},
        "`lr_wavelength`",
    ),
    "mesh_spacing=0": (
        {"method": "pme", "params": {"mesh_spacing": 0.0}},
        "`mesh_spacing`",
    ),
    "interpolation_nodes=9": (
        {"method": "p3m", "params": {"interpolation_nodes": 9}},
        "`interpolation_nodes`",
    ),
    "charges-wrong-length": ({"charges": [1.0]}, "`charges`"),
    "charges-nan": ({"charges": [1.0, NAN]}, "`charges`"),
    "charges-net": ({"charges": [1.0, 1.0]}, "`charges`"),
    "charges-missing-element": ({"charges": {"Na": 1.0}}, "`charges`"),
}


def _atoms_with(**changes):
    def build():
        atoms = rocksalt()
        for key, value in changes.items():
            if key == "positions":
                atoms.positions = value(atoms.positions.copy())
            elif key == "cell":
                atoms.cell = value(np.array(atoms.cell[:]))
            else:
                setattr(atoms, key, value)
        return atoms

    return build


def _nan_first(positions):
    positions[0, 0] = NAN
    return positions


def _repeat_row(cell):
    cell[2] = cell[1]
    return cell


ASE_ATOMS = {
    "positions-nan": (_atoms_with(positions=_nan_first), "`positions`"),
    "cell-zeros": (_atoms_with(cell=np.zeros_like), "`cell`"),
    "cell-repeated-row": (_atoms_with(cell=_repeat_row), "`cell`"),
    "empty-periodic": (lambda: Atoms(cell=5.0 * np.eye(3), pbc=True), "`positions`"),
}


@pytest.mark.parametrize("case", list(ASE_CONSTRUCTOR))
def test_ase_constructor_bad_parameters(case):
    kwargs, argument = ASE_CONSTRUCTOR[case]
    with pytest.raises((ValueError, TypeError)) as error:
        TorchPMECalculator(charges=NACL, **kwargs)
    assert_names(error.value, argument)


@pytest.mark.parametrize("case", list(ASE_CALCULATION))
def test_ase_calculation_bad_parameters(case):
    kwargs, argument = ASE_CALCULATION[case]
    kwargs = {"charges": NACL, **kwargs}
    atoms = rocksalt()
    atoms.calc = TorchPMECalculator(**kwargs)
    with pytest.raises((ValueError, TypeError)) as error:
        atoms.get_potential_energy()
    assert_names(error.value, argument)


@pytest.mark.parametrize("case", list(ASE_ATOMS))
def test_ase_bad_atoms(case):
    build, argument = ASE_ATOMS[case]
    atoms = build()
    atoms.calc = TorchPMECalculator(charges=NACL if len(atoms) else [])
    with pytest.raises((ValueError, TypeError)) as error:
        atoms.get_potential_energy()
    assert_names(error.value, argument)


def test_ase_empty_molecule_has_zero_energy():
    atoms = Atoms()
    atoms.calc = TorchPMECalculator(charges=[])
    assert atoms.get_potential_energy() == 0.0
    assert atoms.get_forces().shape == (0, 3)


def test_ase_single_atom_simple_cubic_madelung():
    length = 4.0
    atoms = Atoms("Na", cell=length * np.eye(3), pbc=True)
    atoms.calc = TorchPMECalculator(
        charges=[1.0], allow_charged=True, prefactor=1.0, accuracy=1e-8
    )
    expected = XI_SIMPLE_CUBIC / (2 * length)
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-5)


# -- the command line ----------------------------------------------------------------


def run_cli(arguments):
    """Exit status and standard error of ``torchpme <arguments>``, in-process."""
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            status = cli.main(arguments)
        except SystemExit as exit_:  # argparse
            status = exit_.code
    return status, stderr.getvalue()


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "nacl.xyz"
    rocksalt().write(str(path), format="extxyz")
    return str(path)


CLI_CASES = {
    **{f"accuracy={v}": (["--accuracy", v], "--accuracy") for v in ["0", "-1", "nan"]},
    **{f"cutoff={v}": (["--cutoff", v], "--cutoff") for v in ["0", "-1"]},
    "missing-file": (["{dir}/missing.xyz"], "`file`"),
    "charges-malformed": (["{file}", "--charges", "Na=x"], "--charges"),
    "charges-missing-element": (["{file}", "--charges", "Na=1"], "--charges"),
    "charges-net": (["{file}", "--charges", "Na=1,Cl=1"], "charges"),
    "smearing=-1": (
        ["{file}", "--charges", "Na=1,Cl=-1", "--smearing", "-1"],
        "smearing",
    ),
    "mesh-spacing=0": (
        ["{file}", "--charges", "Na=1,Cl=-1", "--method", "pme", "--mesh-spacing", "0"],
        "--mesh-spacing",
    ),
    "lr-wavelength=-1": (
        [
            "{file}",
            "--charges",
            "Na=1,Cl=-1",
            "--method",
            "ewald",
            "--lr-wavelength",
            "-1",
        ],
        "--lr-wavelength",
    ),
    "interpolation-nodes=9": (
        [
            "{file}",
            "--charges",
            "Na=1,Cl=-1",
            "--method",
            "p3m",
            "--interpolation-nodes",
            "9",
        ],
        "interpolation_nodes",
    ),
    "method-unknown": (["--method", "bogus"], "--method"),
    "dtype-float16": (["--dtype", "float16"], "--dtype"),
    "output-directory-missing": (
        ["{file}", "--charges", "Na=1,Cl=-1", "--output", "{dir}/no/such/out.json"],
        "--output",
    ),
}


def _cli_params():
    for case, value in CLI_CASES.items():
        values, marks = _split(value)
        yield pytest.param(*values, marks=marks, id=case)


@pytest.mark.parametrize(("arguments", "argument"), _cli_params())
def test_cli_bad_arguments(arguments, argument, structure, tmp_path):
    arguments = [a.format(file=structure, dir=str(tmp_path)) for a in arguments]
    status, stderr = run_cli(arguments)
    assert status not in (0, None)
    assert argument in stderr, stderr
    assert "Traceback" not in stderr


def test_madelung_constant_is_the_published_one():
    """Guard the constant used above: ξ from its own Ewald-type sum (NumPy)."""
    value = ewald_potentials(np.zeros((1, 3)), [[1.0]], np.eye(3))[0, 0]
    assert value == pytest.approx(XI_SIMPLE_CUBIC / 2, rel=1e-10)
    assert math.isfinite(XI_SIMPLE_CUBIC)
