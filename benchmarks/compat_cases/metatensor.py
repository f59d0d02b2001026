"""The metatensor bindings (API §8): a metatomic ``System`` with ``"charge"`` data
and a neighbour-list ``TensorBlock`` in, a ``TensorMap`` of potentials out.

The returned ``TensorMap`` is compared through its keys, samples, properties and
values; forces come from ``torch.autograd.grad`` through the pair vectors.
"""

import torch

from ._calculators import F32, SMEARING, coulomb
from ._helpers import register
from ._systems import pair_vectors, random_ions, shifted_pairs

SAMPLE_NAMES = [
    "first_atom",
    "second_atom",
    "cell_shift_a",
    "cell_shift_b",
    "cell_shift_c",
]


def _labels(names, values):
    from metatensor.torch import Labels

    return Labels(names, torch.tensor(values, dtype=torch.int32))


def _charges(values, blocks=1, components=False):
    """A ``"charge"`` TensorMap of ``(N, C)`` values (optionally malformed)."""
    from metatensor.torch import TensorBlock, TensorMap

    n, c = values.shape
    samples = _labels(["system", "atom"], [[0, i] for i in range(n)])
    properties = _labels(["charge"], [[k] for k in range(c)])
    extra = [_labels(["m"], [[0]])] if components else []
    block = TensorBlock(
        values=values[:, None, :] if components else values,
        samples=samples,
        components=extra,
        properties=properties,
    )
    keys = _labels(["_"], [[k] for k in range(blocks)])
    return TensorMap(keys, [block.copy() for _ in range(blocks)])


def _inputs(dtype=torch.float64, channels=1, full=False, pbc=True, **bad):
    """``(system, neighbors, positions)`` for random ions; ``bad`` spoils a part."""
    from metatensor.torch import TensorBlock
    from metatomic.torch import System

    positions, charges, box = random_ions(8, seed=6, dtype=dtype, skew=False)
    charges = torch.cat([charges, charges.flip(0)][:channels], dim=1)
    positions.requires_grad_(True)
    indices, shifts = shifted_pairs(positions, box, 3.0, full)
    if not pbc:  # an open system: no images, and metatomic wants a zero cell
        inside = (shifts == 0).all(dim=1)
        indices, shifts = indices[inside], shifts[inside]
    cell = box if pbc else torch.zeros_like(box)
    vectors = pair_vectors(positions, box, indices, shifts)[:, :, None]
    samples = torch.cat([indices, shifts.to(torch.int64)], dim=1).to(torch.int32)
    neighbors = TensorBlock(
        values=vectors.float() if "float32" in bad else vectors,
        samples=_labels(bad.get("sample_names", SAMPLE_NAMES), samples.tolist()),
        components=[_labels([bad.get("component", "xyz")], [[0], [1], [2]])],
        properties=_labels([bad.get("property", "distance")], [[0]]),
    )
    system = System(
        types=torch.ones(8, dtype=torch.int32),
        positions=positions,
        cell=cell,
        pbc=torch.tensor([pbc] * 3),
    )
    if "no_charge" not in bad:
        system.add_data(
            "charge",
            _charges(charges, bad.get("blocks", 1), "components" in bad),
        )
    return system, neighbors, positions


def _summary(tensor_map, positions=None):
    block = tensor_map.block()
    out = {
        "keys": [tensor_map.keys.names, tensor_map.keys.values],
        "samples": [block.samples.names, block.samples.values],
        "properties": [block.properties.names, block.properties.values],
        "components": len(block.components),
        "values": block.values,
    }
    if positions is not None:
        energy = (block.values * _charge_values(positions)).sum()
        out["forces"] = -torch.autograd.grad(energy, positions)[0]
    return out


def _charge_values(positions):
    return random_ions(8, seed=6, dtype=positions.dtype, skew=False)[1]


def _calculator(tp, kind, **options):
    if kind == "direct":
        return tp.metatensor.Calculator(tp.CoulombPotential(), **options)
    if kind == "ewald":
        return tp.metatensor.EwaldCalculator(coulomb(tp), lr_wavelength=0.6, **options)
    if kind == "pme":
        return tp.metatensor.PMECalculator(coulomb(tp), mesh_spacing=0.5, **options)
    return tp.metatensor.P3MCalculator(coulomb(tp), 0.5, 3, **options)


def _run(kind, forces=True, calculator_options=None, **inputs):
    def call(tp):
        system, neighbors, positions = _inputs(**inputs)
        calculator = _calculator(tp, kind, **(calculator_options or {}))
        return _summary(calculator(system, neighbors), positions if forces else None)

    return call


CALLS = {
    "direct": _run("direct"),
    "ewald": _run("ewald"),
    "pme": _run("pme"),
    "p3m": _run("p3m"),
    "ewald_full_list": _run(
        "ewald", calculator_options={"full_neighbor_list": True}, full=True
    ),
    "pme_two_channels": _run("pme", forces=False, channels=2),
    "direct_open_system": _run("direct", pbc=False),
    # errors of _validate_compute_parameters, in the documented order
    "neighbors_float32": _run("ewald", float32=True),
    "neighbors_sample_names": _run("ewald", sample_names=["i", "j", "a", "b", "c"]),
    "neighbors_components": _run("ewald", component="abc"),
    "neighbors_properties": _run("ewald", property="vector"),
    "no_charge": _run("ewald", no_charge=True),
    "charge_two_blocks": _run("ewald", blocks=2),
    "charge_components": _run("ewald", components=True),
}
for _name, _call in CALLS.items():
    register(__name__, f"mt_{_name}", _call)
register(__name__, "mt_ewald_float32", _run("ewald", dtype=torch.float32), **F32)
register(
    __name__,
    "mt_ewald_open_system",
    _run("ewald", pbc=False),
    differs="a reciprocal-space calculator refuses a system that is not periodic "
    "along all three axes (ValueError); torch-pme inverts its zero cell (_LinAlgError)",
)
register(
    __name__,
    "mt_not_a_potential",
    lambda tp: tp.metatensor.EwaldCalculator("coulomb", lr_wavelength=0.5),
)
register(
    __name__,
    "mt_wrapped_calculators",
    lambda tp: {
        name: [
            getattr(tp.metatensor, name)._base_calculator.__name__,
            type(_calculator(tp, kind)._calculator).__name__,
        ]
        for name, kind in (
            ("Calculator", "direct"),
            ("EwaldCalculator", "ewald"),
            ("PMECalculator", "pme"),
            ("P3MCalculator", "p3m"),
        )
    },
)
register(
    __name__,
    "mt_constructor_arguments",
    lambda tp: [
        _calculator(tp, "p3m")._calculator.interpolation_nodes,
        _calculator(
            tp, "ewald", full_neighbor_list=True
        )._calculator.full_neighbor_list,
        float(_calculator(tp, "pme")._calculator.potential.smearing) == SMEARING,
        sorted(tp.metatensor.__all__),
    ],
)
