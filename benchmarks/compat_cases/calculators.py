"""Calculators (API §5) and prefactors (§6), called the way users call them.

Each case builds a potential and a calculator, evaluates a small system (random
ions in a skewed cell, the rock-salt crystal, the four-atom system of §11) and
returns potentials, energies and gradients of the energy (forces, cell and charge
gradients through ``torch.autograd.grad``, distances computed from the positions).
"""

import numpy as np
import torch

from . import case
from ._calculators import (
    CUTOFF,
    DIPOLES,
    DIRECT,
    F32,
    LISTS,
    METHODS,
    POTENTIALS,
    SMEARING,
    combined,
    coulomb,
    default_weights,
    dipoles,
    evaluate,
    ewald_kvectors,
    ions_for,
    padded_batch,
    power,
    slab_system,
    spec_system,
    with_list,
)
from ._helpers import register
from ._systems import neighbors, random_ions, rock_salt, shifted_pairs

BOTH = ("potential", "forces")

P3M_SKEWED = (
    "P3M's influence function is exact in skewed cells (torch-pme 0.5 scales "
    "Cartesian k components by |a_d|/n_d, exact for orthorhombic cells only); "
    "P3MCalculator(cartesian_influence=True) reproduces torch-pme"
)


def _table(calls, **options):
    """One case per entry, ``name: function of torchpme``."""
    for name, call in calls.items():
        register(__name__, name, lambda tp, call=call: call(tp), **options)


def _run(method, make_potential, system, want=BOTH, full=False, **forward):
    """``function of torchpme`` evaluating ``METHODS[method]`` on ``system()``."""

    def call(tp):
        calculator = METHODS[method](tp, make_potential(tp), full_neighbor_list=full)
        return evaluate(calculator, system(), want, full=full, **forward)

    return call


# ------------------------------------------------ every method with every potential
_table(
    {
        f"{method}_{label}": _run(method, make, lambda m=method: ions_for(m))
        for method in METHODS
        for label, make in POTENTIALS.items()
    }
)
_table({f"ewald_power{p}": _run("ewald", power(p), random_ions) for p in (1, 3, 6)})
_table(
    {
        f"{method}_cell_and_charge_gradients": _run(
            method,
            coulomb,
            lambda m=method: ions_for(m, seed=3),
            ("energy", "cell_grad", "charge_grad"),
        )
        for method in ("ewald", "pme")
    }
)
_table(
    {
        f"p3m_skewed_cell{suffix}": lambda tp, n=n: evaluate(
            tp.P3MCalculator(coulomb(tp), mesh_spacing=0.5, interpolation_nodes=n),
            random_ions(),
            BOTH,
        )
        for suffix, n in (("", 4), ("_nodes_2", 2))
    },
    differs=P3M_SKEWED,
    within=2e-3,
)
_table(
    {
        "p3m_cell_and_charge_gradients": _run(
            "p3m",
            coulomb,
            lambda: ions_for("p3m", seed=3),
            ("energy", "cell_grad", "charge_grad"),
        )
    },
    differs=P3M_SKEWED + " (so the shear entries of its cell gradient differ)",
    within=3e-3,
)

# ------------------------------------------------ rock salt: the Madelung energy
for _method in METHODS:
    _table(
        {
            f"{_method}_madelung": lambda tp, m=_method: {
                kind: _run(
                    m, lambda tp: coulomb(tp, 0.6), rock_salt, ("energy",), full
                )(tp)
                for kind, full in (("half", False), ("full", True))
            }
        }
    )
    _table(
        {
            f"{_method}_madelung_float32": _run(
                _method, lambda tp: coulomb(tp, 0.6), lambda: rock_salt(torch.float32)
            )
        },
        **F32,
    )


# ------------------------------------------------ neighbour lists users build
_table(
    {
        "neighbor_lists": lambda tp: {
            **{
                f"ewald_{k}": with_list("ewald", m, f)(tp)
                for k, (f, m) in LISTS.items()
            },
            "pme_vesin_full": with_list("pme", *LISTS["vesin_full"][::-1])(tp),
            "ewald_int32": with_list(
                "ewald", LISTS["helper_half"][1], False, torch.int32
            )(tp),
        }
    }
)

# ------------------------------------------------ number forms of the parameters
_FORMS = {
    "float": float,
    "int": round,
    "numpy_float64": np.float64,
    "numpy_float32": np.float32,
    "tensor0d": lambda x: torch.tensor(float(x)),
}
_PARAMETERS = {
    "lr_wavelength": lambda tp, x: tp.EwaldCalculator(
        coulomb(tp), lr_wavelength=x(0.9)
    ),
    "mesh_spacing": lambda tp, x: tp.PMECalculator(coulomb(tp), mesh_spacing=x(1.0)),
    "smearing": lambda tp, x: tp.EwaldCalculator(
        coulomb(tp, x(1.0)), lr_wavelength=0.7
    ),
    "prefactor": lambda tp, x: tp.PMECalculator(
        tp.CoulombPotential(smearing=SMEARING, prefactor=x(2.0)), mesh_spacing=0.5
    ),
}
_table(
    {
        f"{parameter}_forms": lambda tp, make=make: {
            form: evaluate(make(tp, x), spec_system()) for form, x in _FORMS.items()
        }
        for parameter, make in _PARAMETERS.items()
    }
)


@case(
    differs="a float32 lr_wavelength (0-dim tensor, NumPy scalar) is read as a "
    "number: ns_d = ceil(|a_d|/λ) in float64, where torch-pme's float32 arithmetic "
    "rounds |a_d|/λ = 5 up to 6 k-vector layers",
    within=2e-3,
)
def lr_wavelength_float32_divides_cell(tp):
    calculator = tp.EwaldCalculator(coulomb(tp), lr_wavelength=torch.tensor(1.0))
    return evaluate(calculator, spec_system())


_table(
    {
        f"{method}_interpolation_nodes": lambda tp, method=method, nodes=nodes: {
            n: evaluate(
                getattr(tp, f"{method.upper()}Calculator")(
                    coulomb(tp), mesh_spacing=0.4, interpolation_nodes=n
                ),
                ions_for(method),
                BOTH,
            )
            for n in nodes
        }
        for method, nodes in (("pme", range(3, 8)), ("p3m", range(1, 6)))
    }
)

# ------------------------------------------------ periodicity (slabs)
_table(
    {
        name: _run(method, make, slab_system, periodic=torch.tensor(periodic))
        for name, method, make, periodic in (
            ("ewald_slab_xy", "ewald", coulomb, (True, True, False)),
            ("pme_slab_yz", "pme", coulomb, (False, True, True)),
            ("p3m_slab_xz", "p3m", coulomb, (True, False, True)),
            ("ewald_slab_power1", "ewald", power(1), (True, True, False)),
            ("ewald_slab_power2", "ewald", power(2), (True, True, False)),
            ("ewald_slab_combined", "ewald", combined, (True, True, False)),
            ("pme_periodic_all", "pme", coulomb, (True, True, True)),
        )
    }
)

# ------------------------------------------------ k-vectors and masks
_table(
    {
        "ewald_kvectors_explicit": lambda tp: _run(
            "ewald", coulomb, spec_system, kvectors=ewald_kvectors(tp, spec_system()[2])
        )(tp),
        "ewald_kvectors_subset": lambda tp: _run(
            "ewald",
            coulomb,
            spec_system,
            kvectors=ewald_kvectors(tp, spec_system()[2], 1.5)[::3],
        )(tp),
        "ewald_kvectors_batched_helper": lambda tp: _run(
            "ewald",
            coulomb,
            spec_system,
            kvectors=tp.lib.compute_batched_kvectors(0.6, spec_system()[2][None])[0],
        )(tp),
    }
)
_PAIRS = len(shifted_pairs(*spec_system()[::2], CUTOFF)[0])
_PARTIAL = torch.arange(_PAIRS) % 3 != 0
_ALL_NODES = torch.ones(4, dtype=torch.bool)
_table(
    {
        name: _run(method, coulomb, spec_system, **options)
        for name, method, options in (
            ("ewald_node_mask_all", "ewald", {"node_mask": _ALL_NODES}),
            (
                "ewald_node_mask_partial",
                "ewald",
                {"node_mask": torch.tensor([True, True, False, True])},
            ),
            ("ewald_pair_mask", "ewald", {"pair_mask": _PARTIAL}),
            ("pme_pair_mask", "pme", {"pair_mask": _PARTIAL}),
            ("pme_node_mask_refused", "pme", {"node_mask": _ALL_NODES}),
            ("p3m_kvectors_refused", "p3m", {"kvectors": torch.ones(5, 3).double()}),
        )
    }
)

# ------------------------------------------------ batching with torch.vmap (§5.5)
_table(
    {
        f"ewald_vmap_padded_{label}": lambda tp, make=make: torch.vmap(
            tp.EwaldCalculator(make(tp), lr_wavelength=0.7).forward
        )(*padded_batch(tp, 0.7))
        for label, make in (("coulomb", coulomb), ("power4", power(4)))
    }
)


# ------------------------------------------------ channels; direct evaluation
@case()
def ewald_three_channels(tp):
    positions, charges, cell = random_ions()
    channels = torch.cat([charges, 0.5 * charges, charges.flip(0)], dim=1)
    calculator = tp.EwaldCalculator(coulomb(tp), lr_wavelength=0.6)
    return evaluate(calculator, (positions, channels, cell), BOTH)


_table(
    {
        f"direct_{name}": lambda tp, make=make, full=full: evaluate(
            tp.Calculator(make(tp), full_neighbor_list=full),
            random_ions(),
            BOTH,
            full=full,
        )
        for name, (make, full) in DIRECT.items()
    }
)
_table(
    {
        "direct_coulomb_float32": lambda tp: evaluate(
            tp.Calculator(tp.CoulombPotential()), random_ions(dtype=torch.float32), BOTH
        )
    },
    **F32,
)


@case()
def direct_pair_mask(tp):
    positions, charges, cell = random_ions()
    indices, distances = neighbors(positions, cell, CUTOFF)
    mask = torch.arange(len(distances)) % 2 == 0
    calculator = tp.Calculator(tp.CoulombPotential())
    return calculator(charges, cell, positions, indices, distances, pair_mask=mask)


# ------------------------------------------------ dipoles (§5.6)
_table(
    {
        f"dipole_{name}": lambda tp, make=make, options=options: dipoles(
            tp, make(tp), BOTH, **options
        )
        for name, (make, options) in DIPOLES.items()
    }
)
_table(
    {
        "dipole_ewald_float32": lambda tp: dipoles(
            tp,
            tp.PotentialDipole(smearing=SMEARING),
            dtype=torch.float32,
            lr_wavelength=0.7,
        )
    },
    **F32,
)


# ------------------------------------------------ prefactors (§6)
@case()
def prefactors_values(tp):
    names = ("SI", "eV_A", "kcalmol_A", "kJmol")
    return {name: getattr(tp.prefactors, name) for name in names}


_table(
    {
        f"ewald_prefactor_{name}": _run(
            "ewald",
            lambda tp, name=name: coulomb(tp, prefactor=getattr(tp.prefactors, name)),
            rock_salt,
            ("energy", "forces"),
        )
        for name in ("eV_A",)
    }
)


# ------------------------------------------------ attributes and state
@case()
def calculator_attributes(tp):
    ewald = tp.EwaldCalculator(coulomb(tp), 0.5, True)
    pme = tp.PMECalculator(coulomb(tp), 0.4, 5)
    p3m = tp.P3MCalculator(coulomb(tp), mesh_spacing=0.4, interpolation_nodes=2)
    return {
        "ewald": [ewald.lr_wavelength, ewald.full_neighbor_list],
        "pme": [pme.mesh_spacing, pme.interpolation_nodes, pme.full_neighbor_list],
        "pme_parts": [type(pme.kspace_filter).__name__, pme.mesh_interpolator.method],
        "p3m": [p3m.interpolation_nodes, p3m.mesh_interpolator.interpolation_nodes],
        "p3m_parts": [type(p3m.kspace_filter).__name__, p3m.mesh_interpolator.method],
        "potential": type(ewald.potential).__name__,
    }


@case()
def calculator_state_dict_keys(tp):
    calculator = tp.EwaldCalculator(coulomb(tp), lr_wavelength=0.5)
    return sorted(calculator.state_dict())


# ------------------------------------------------ more argument forms
_table(
    {
        "pme_combined_weights_to_float64": lambda tp: evaluate(
            tp.PMECalculator(default_weights(tp).to(torch.float64), mesh_spacing=0.5),
            spec_system(),
            BOTH,
        ),
    }
)
_table(
    {
        "pme_combined_default_weights": lambda tp: evaluate(
            tp.PMECalculator(default_weights(tp), mesh_spacing=0.5), spec_system()
        )
    },
    differs="float32 default weights of a CombinedPotential are used with float64 "
    "constituents (torch-pme's PME/P3M constructor fails in torch.inner, §10 quirk 17)",
)
_NODE_FORMS = {"numpy_int": np.int64, "tensor0d": torch.tensor}
_table(
    {
        f"{method}_interpolation_nodes_{form}": lambda tp, method=method, x=x: evaluate(
            getattr(tp, f"{method.upper()}Calculator")(
                coulomb(tp), 0.5, interpolation_nodes=x(3)
            ),
            ions_for(method),
        )
        for method in ("pme", "p3m")
        for form, x in _NODE_FORMS.items()
    }
)
