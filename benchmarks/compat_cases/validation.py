"""Input conventions and validation (API §2), constructor errors (§5) and bad inputs.

Each documented error of ``_validate_parameters`` is provoked once, called directly
(``torchpme._utils._validate_parameters``) and through a calculator's ``forward``;
inputs with two errors check the documented order. Tensors on the ``meta`` device
stand for tensors on another device.
"""

import torch

from . import case
from ._calculators import coulomb, spec_system
from ._helpers import register

PAIRS = [[0, 1], [0, 2], [1, 3], [2, 3], [0, 0]]
DISTANCES = [1.5, 2.0, 2.5, 3.0, 4.0]


def _inputs(**options):
    """Valid keyword arguments of ``forward`` for the §11 system, with ``options``."""
    positions, charges, cell = spec_system()
    return {
        "charges": charges,
        "cell": cell,
        "positions": positions,
        "neighbor_indices": torch.tensor(PAIRS),
        "neighbor_distances": torch.tensor(DISTANCES, dtype=torch.float64),
        **options,
    }


def _meta(tensor):
    return torch.empty_like(tensor, device="meta")


def _edit(**changes):
    """A function of the inputs replacing each named one by ``change(inputs)``."""
    return lambda a: {**a, **{name: change(a) for name, change in changes.items()}}


# name: (edit of valid inputs, options added first); ordered as in §2
MUTATIONS = {
    "valid": _edit(),
    "valid_all_options": _edit(
        periodic=lambda a: torch.tensor([True, True, True]),
        pair_mask=lambda a: torch.ones(5, dtype=torch.bool),
        node_mask=lambda a: torch.ones(4, dtype=torch.bool),
        kvectors=lambda a: torch.ones(6, 3, dtype=torch.float64),
    ),
    "positions_two_columns": _edit(positions=lambda a: a["positions"][:, :2]),
    "positions_1d": _edit(positions=lambda a: a["positions"][0]),
    "cell_shape": _edit(cell=lambda a: a["cell"][:2]),
    "cell_float32": _edit(cell=lambda a: a["cell"].float()),
    "cell_other_device": _edit(cell=lambda a: _meta(a["cell"])),
    "charges_1d": _edit(charges=lambda a: a["charges"][:, 0]),
    "charges_wrong_atoms": _edit(charges=lambda a: a["charges"][:3]),
    "charges_float32": _edit(charges=lambda a: a["charges"].float()),
    "charges_other_device": _edit(charges=lambda a: _meta(a["charges"])),
    "indices_transposed": _edit(neighbor_indices=lambda a: a["neighbor_indices"].T),
    "indices_other_device": _edit(
        neighbor_indices=lambda a: _meta(a["neighbor_indices"])
    ),
    "indices_int32": _edit(neighbor_indices=lambda a: a["neighbor_indices"].int()),
    "distances_wrong_length": _edit(
        neighbor_distances=lambda a: a["neighbor_distances"][:-1]
    ),
    "distances_float32": _edit(
        neighbor_distances=lambda a: a["neighbor_distances"].float()
    ),
    "distances_other_device": _edit(
        neighbor_distances=lambda a: _meta(a["neighbor_distances"])
    ),
    "distances_other_device_float32": _edit(
        neighbor_distances=lambda a: _meta(a["neighbor_distances"].float())
    ),
    "periodic_shape": _edit(periodic=lambda a: torch.tensor([True, True])),
    "periodic_other_device": _edit(periodic=lambda a: _meta(torch.ones(3, dtype=bool))),
    "pair_mask_shape": _edit(pair_mask=lambda a: torch.ones(4, dtype=torch.bool)),
    "pair_mask_other_device": _edit(
        pair_mask=lambda a: _meta(torch.ones(5, dtype=bool))
    ),
    "pair_mask_float": _edit(pair_mask=lambda a: torch.ones(5)),
    "pair_mask_other_device_float": _edit(pair_mask=lambda a: _meta(torch.ones(5))),
    "node_mask_shape": _edit(node_mask=lambda a: torch.ones(3, dtype=torch.bool)),
    "node_mask_other_device": _edit(
        node_mask=lambda a: _meta(torch.ones(4, dtype=bool))
    ),
    "node_mask_int": _edit(node_mask=lambda a: torch.ones(4, dtype=torch.int64)),
    "kvectors_shape": _edit(kvectors=lambda a: torch.ones(6, 2, dtype=torch.float64)),
    "kvectors_other_device": _edit(kvectors=lambda a: _meta(torch.ones(6, 3).double())),
    "kvectors_float32": _edit(kvectors=lambda a: torch.ones(6, 3)),
    "kvectors_other_device_float32": _edit(kvectors=lambda a: _meta(torch.ones(6, 3))),
    # two errors at once: the first in the documented order wins
    "order_positions_then_cell": _edit(
        positions=lambda a: a["positions"][:, :2], cell=lambda a: a["cell"].float()
    ),
    "order_cell_dtype_then_charges_shape": _edit(
        cell=lambda a: a["cell"].float(), charges=lambda a: a["charges"][:, 0]
    ),
    "order_cell_shape_then_charges_dtype": _edit(
        cell=lambda a: a["cell"][:2], charges=lambda a: a["charges"].float()
    ),
    "order_charges_dtype_then_indices_shape": _edit(
        charges=lambda a: a["charges"].float(),
        neighbor_indices=lambda a: a["neighbor_indices"].T,
    ),
    "order_distances_dtype_then_periodic_shape": _edit(
        neighbor_distances=lambda a: a["neighbor_distances"].float(),
        periodic=lambda a: torch.tensor([True]),
    ),
    "order_pair_mask_dtype_then_node_mask_shape": _edit(
        pair_mask=lambda a: torch.ones(5), node_mask=lambda a: torch.ones(2, dtype=bool)
    ),
    "order_node_mask_dtype_then_kvectors_shape": _edit(
        node_mask=lambda a: torch.ones(4), kvectors=lambda a: torch.ones(2, 2).double()
    ),
}

EARLIER = "refused before any work with a ValueError/TypeError naming the argument"
#: deliberate differences, by case name
DIFFERS = {
    "ewald_order_distances_dtype_then_periodic_shape": (
        "with two invalid arguments, `periodic` is reported first (it is read to "
        "count the periodic directions before the other checks)"
    ),
    "ewald_periodic_other_device": (
        "`periodic` is read (to count periodic directions) before validation, which "
        "a meta tensor cannot be; one on a real other device gets torch-pme's ValueError"
    ),
}


def _validate(edit):
    def call(tp):
        return tp._utils._validate_parameters(**edit(_inputs()))

    return call


def _forward(edit, method="ewald"):
    def call(tp):
        if method == "ewald":
            calculator = tp.EwaldCalculator(coulomb(tp), lr_wavelength=0.7)
        else:
            calculator = tp.PMECalculator(coulomb(tp), mesh_spacing=0.6)
        return calculator(**edit(_inputs()))

    return call


# through the forward of Ewald (which takes every argument) and, for the masks and
# k-vectors, of PME (whose validation runs before it refuses them)
FORWARD = {
    "ewald": [
        "valid_all_options",
        "positions_1d",
        "indices_int32",
        "periodic_shape",
        "periodic_other_device",
        "order_distances_dtype_then_periodic_shape",
    ],
    "pme": ["node_mask_shape", "kvectors_float32"],
}

for _name, _edit_inputs in MUTATIONS.items():
    register(__name__, f"validate_{_name}", _validate(_edit_inputs))
for _method, _names in FORWARD.items():
    for _name in _names:
        _case = f"{_method}_{_name}"
        register(
            __name__,
            _case,
            _forward(MUTATIONS[_name], _method),
            differs=DIFFERS.get(_case),
        )


# ------------------------------------------------ constructor errors (§5)
def _potential(tp, smearing):
    return tp.CoulombPotential(smearing=smearing)


CONSTRUCTORS = {
    "calculator_not_a_potential": lambda tp: tp.Calculator("coulomb"),
    "calculator_dipole_potential": lambda tp: tp.Calculator(tp.PotentialDipole()),
    "ewald_without_smearing": lambda tp: tp.EwaldCalculator(tp.CoulombPotential(), 0.5),
    "ewald_zero_smearing": lambda tp: tp.EwaldCalculator(_potential(tp, 0.0), 0.5),
    "ewald_zero_wavelength": lambda tp: tp.EwaldCalculator(coulomb(tp), 0.0),
    "ewald_negative_wavelength": lambda tp: tp.EwaldCalculator(coulomb(tp), -0.5),
    "pme_without_smearing": lambda tp: tp.PMECalculator(tp.CoulombPotential(), 0.5),
    "dipole_not_dipole_potential": lambda tp: tp.CalculatorDipole(coulomb(tp)),
    "dipole_wavelength_without_smearing": lambda tp: tp.CalculatorDipole(
        tp.PotentialDipole(), lr_wavelength=0.5
    ),
    "dipole_smearing_without_wavelength": lambda tp: tp.CalculatorDipole(
        tp.PotentialDipole(smearing=0.5)
    ),
}
for _nodes in (2, 8):
    CONSTRUCTORS[f"pme_interpolation_nodes_{_nodes}"] = lambda tp, n=_nodes: (
        tp.PMECalculator(coulomb(tp), 0.5, interpolation_nodes=n)
    )
for _nodes in (0, 6):
    CONSTRUCTORS[f"p3m_interpolation_nodes_{_nodes}"] = lambda tp, n=_nodes: (
        tp.P3MCalculator(coulomb(tp), 0.5, interpolation_nodes=n)
    )
for _name, _make in CONSTRUCTORS.items():
    register(__name__, _name, lambda tp, make=_make: type(make(tp)).__name__)


# ------------------------------------------------ bad values and other input forms
def _ewald(tp, **inputs):
    calculator = tp.EwaldCalculator(coulomb(tp), lr_wavelength=0.7)
    return calculator(**_inputs(**inputs))


NOT_SLAB = (
    "periodic with fewer than two True is taken at its word (torch-pme computes "
    "the fully periodic sum)"
)


@case(
    differs="NotImplementedError (no k-space part) instead of a TypeError from a signature mismatch (API §10, safe to improve 4)"
)
def base_calculator_with_smearing(tp):
    return tp.Calculator(coulomb(tp))(**_inputs())


@case(differs=EARLIER + " (torch-pme: IndexError from indexing)")
def ewald_indices_out_of_range(tp):
    return _ewald(tp, neighbor_indices=torch.tensor(PAIRS) + 1)


@case(differs=EARLIER + " (torch-pme: RuntimeError from index_add_)")
def ewald_indices_negative(tp):
    return _ewald(tp, neighbor_indices=torch.tensor(PAIRS) - 1)


@case(differs=EARLIER + " (torch-pme: IndexError from indexing)")
def ewald_indices_float(tp):
    return _ewald(tp, neighbor_indices=torch.tensor(PAIRS, dtype=torch.float64))


@case(differs=EARLIER + " (torch-pme: _LinAlgError from inverting the cell)")
def ewald_singular_cell(tp):
    return _ewald(tp, cell=torch.zeros(3, 3, dtype=torch.float64))


@case()
def direct_singular_cell(tp):
    calculator = tp.Calculator(tp.CoulombPotential())
    return calculator(**_inputs(cell=torch.zeros(3, 3, dtype=torch.float64)))


@case()
def ewald_nan_positions(tp):
    positions = spec_system()[0]
    positions[0, 0] = float("nan")
    return _ewald(tp, positions=positions)


@case(differs=EARLIER + " (torch-pme: RuntimeError from linalg.inv)")
def ewald_half_precision(tp):
    inputs = {
        key: value.half()
        for key, value in _inputs().items()
        if key != "neighbor_indices"
    }
    return _ewald(tp, **inputs)


@case(differs=EARLIER + " (torch-pme: RuntimeError from index_add_)")
def ewald_integer_positions(tp):
    positions, charges, cell = (
        torch.ones_like(t, dtype=torch.int64) for t in spec_system()
    )
    return _ewald(
        tp,
        positions=positions,
        charges=charges,
        cell=cell,
        neighbor_distances=torch.ones(5, dtype=torch.int64),
    )


@case(differs=EARLIER + " (torch-pme: AttributeError)")
def ewald_charges_as_list(tp):
    return _ewald(tp, charges=spec_system()[1].tolist())


@case()
def ewald_positions_as_numpy(tp):
    return _ewald(tp, positions=spec_system()[0].numpy())


@case()
def ewald_periodic_float(tp):
    return _ewald(tp, periodic=torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))


@case()
def ewald_periodic_int(tp):
    return _ewald(tp, periodic=torch.tensor([1, 1, 0]))


@case(differs=NOT_SLAB + ": EwaldCalculator refuses fewer than two periodic directions")
def ewald_periodic_wire(tp):
    return _ewald(tp, periodic=torch.tensor([True, False, False]))


@case(differs=NOT_SLAB + ": EwaldCalculator refuses fewer than two periodic directions")
def ewald_periodic_none_true(tp):
    return _ewald(tp, periodic=torch.tensor([False, False, False]))


@case(differs=NOT_SLAB + ": PME sums an open cluster without images")
def pme_periodic_none_true(tp):
    calculator = tp.PMECalculator(coulomb(tp), mesh_spacing=0.6)
    return calculator(**_inputs(periodic=torch.tensor([False, False, False])))


@case(
    differs="mesh_spacing is checked at construction (ValueError); torch-pme fails in forward with a TypeError"
)
def pme_mesh_spacing_none(tp):
    calculator = tp.PMECalculator(coulomb(tp), mesh_spacing=None)
    return calculator(**_inputs())


@case(
    differs="mesh_spacing is checked at construction (ValueError); torch-pme fails in forward with a RuntimeError"
)
def pme_mesh_spacing_negative(tp):
    calculator = tp.PMECalculator(coulomb(tp), mesh_spacing=-0.5)
    return calculator(**_inputs())


@case()
def ewald_positional_arguments(tp):
    inputs = _inputs()
    calculator = tp.EwaldCalculator(coulomb(tp), 0.7)
    return calculator(*inputs.values(), torch.ones(3, dtype=bool), None, None, None)


def _dipoles(tp, dipoles, vectors):
    positions, _, cell = spec_system()
    calculator = tp.CalculatorDipole(tp.PotentialDipole())
    return calculator(dipoles, cell, positions, torch.tensor([[0, 1]]), vectors)


@case()
def dipole_validation_charges_shape(tp):
    vectors = torch.ones(1, 3, dtype=torch.float64)
    return _dipoles(tp, torch.ones(3, 3, dtype=torch.float64), vectors)


@case()
def dipole_vectors_float32(tp):
    return _dipoles(tp, torch.ones(4, 3, dtype=torch.float64), torch.ones(1, 3))
