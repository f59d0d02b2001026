"""``torchpme.potentials``: every method of the Coulomb, inverse-power-law, spline,
combined and dipole potentials and of the base class, with the number forms users
pass for smearing, exponent and prefactor, float32 and float64 inputs, gradients, and
the documented errors.
"""

from functools import partial

import numpy as np
import torch

from . import _helpers
from ._helpers import as_tensor as _t

table = partial(_helpers.table, __name__)
forms = partial(_helpers.forms, __name__)
deliberate = partial(_helpers.deliberate, __name__)
F64, F32 = torch.float64, torch.float32
DIST = [0.0, 1e-7, 0.3, 1.0, 2.5, 6.0]
K_SQ = [0.0, 1e-6, 0.3, 1.0, 4.0, 25.0]
MASK = [True, False, True, True, False, True]
PERIODIC = [[1, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 1]]
VECTORS = [[1.0, 0.5, -0.3], [0.2, -1.4, 0.9], [0.05, 0.1, 0.0], [2.0, 1.0, 2.5]]


def _methods(potential, dtype=F64, mask=None):
    """Every (range-separated) method of a potential at fixed distances and k²."""
    # float32: no distances so short that r^-p overflows
    dist, k_sq = _t(DIST if dtype == F64 else DIST[2:], dtype), _t(K_SQ, dtype)
    mask = None if mask is None else torch.tensor(mask)
    return {
        "from_dist": potential.from_dist(dist, mask),
        "lr_from_dist": potential.lr_from_dist(dist, mask),
        "sr_from_dist": potential.sr_from_dist(dist, mask),
        "lr_from_k_sq": potential.lr_from_k_sq(k_sq),
        "kernel_from_k_sq": potential.kernel_from_k_sq(k_sq),
        "self_contribution": potential.self_contribution(),
        "background_correction": potential.background_correction(),
    }


def _grads(potential, names=("from_dist", "lr_from_dist", "sr_from_dist")):
    """Gradients of ``sum(method(x))`` for distances (away from 0) and for k²."""
    grads = {}
    for name in (*names, "lr_from_k_sq"):
        x = _t(K_SQ if name == "lr_from_k_sq" else DIST[2:]).requires_grad_()
        grads[name] = torch.autograd.grad(getattr(potential, name)(x).sum(), x)[0]
    return grads


def _raises(prefix, make, methods, inputs=DIST):
    """One case per method of the potential ``make(torchpme)`` that must raise; the
    methods that take an argument get ``inputs``."""
    no_argument = ("self_contribution", "background_correction")
    table(
        {
            f"{prefix}_{name}": lambda t, n=name: getattr(make(t), n)(
                *(() if n in no_argument else (_t(inputs),))
            )
            for name in methods
        }
    )


NUMBER_FORMS = {
    "float": lambda: 0.8,
    "int": lambda: 1,
    "numpy_float64": lambda: np.float64(0.8),
    "numpy_float32": lambda: np.float32(0.8),
    "tensor0d": lambda: _t(0.8),
    "tensor0d_float32": lambda: torch.tensor(0.8),
}

# --- Potential (base class) ----------------------------------------------------------


def _user_potential(t, **options):
    """A user-written potential: only from_dist and lr_from_dist, the rest inherited."""

    class Yukawa(t.Potential):
        def from_dist(self, dist, pair_mask=None):
            return self.prefactor * torch.exp(-dist) / dist.clamp(min=1e-9)

        def lr_from_dist(self, dist, pair_mask=None):
            return self.from_dist(dist) * torch.erf(dist)

    return Yukawa(**options)


def _user_methods(t):
    potential = _user_potential(t, smearing=1.0, exclusion_radius=2.0, prefactor=0.5)
    dist, charges = _t(DIST), _t([[1.0], [2.0]])
    return {
        "sr_from_dist": potential.sr_from_dist(dist, torch.tensor(MASK)),
        "sr_without_exclusion": _user_potential(t, smearing=1.0).sr_from_dist(dist),
        "f_cutoff": potential.f_cutoff(dist),
        "pbc_correction": potential.pbc_correction(None, None, None, charges),
        "buffers": [potential.smearing, potential.prefactor],
    }


table(
    {
        "base_user_subclass": _user_methods,
        "base_f_cutoff_degrees": lambda t: [
            t.Potential(exclusion_radius=2.2, exclusion_degree=d).f_cutoff(_t(DIST))
            for d in (1, 2, 3)
        ],
    },
)
_raises("base_error_unset", _user_potential, ["sr_from_dist", "f_cutoff"])
_raises(
    "base_error",
    lambda t: t.Potential(smearing=1.0),
    ["from_dist", "sr_from_dist", "self_contribution"],
)

# --- CoulombPotential ----------------------------------------------------------------


def _coulomb_buffers(t, smearing):
    potential = t.CoulombPotential(smearing=smearing)
    return {**_methods(potential), "smearing": potential.smearing}


def _slab(t, potential):
    rng = np.random.default_rng(5)
    positions, charges = _t(rng.random((4, 3)) * 3), _t(rng.normal(size=(4, 2)))
    cell = _t([[3.0, 0.0, 0.0], [0.4, 3.2, 0.0], [0.0, 0.0, 9.0]])
    return [
        potential.pbc_correction(periodic, positions, cell, charges)
        for periodic in [None, *torch.tensor(PERIODIC)]
    ]


forms("coulomb_smearing", NUMBER_FORMS, _coulomb_buffers)
forms(
    "coulomb_prefactor",
    {k: NUMBER_FORMS[k] for k in ("int", "numpy_float32")},
    lambda t, a: _methods(t.CoulombPotential(smearing=0.8, prefactor=a)),
)
table(
    {
        "coulomb_pair_mask": lambda t: _methods(
            t.CoulombPotential(smearing=0.8), mask=MASK
        ),
        "coulomb_exclusion": lambda t: _methods(
            t.CoulombPotential(smearing=0.8, exclusion_radius=2.2, exclusion_degree=2),
            mask=MASK,
        ),
        "coulomb_grads": lambda t: _grads(t.CoulombPotential(smearing=0.8)),
        "coulomb_direct_from_dist": lambda t: t.CoulombPotential().from_dist(_t(DIST)),
        "coulomb_slab_correction": lambda t: _slab(
            t, t.CoulombPotential(prefactor=2.0)
        ),
    },
)
table({"coulomb_float32": lambda t: _methods(t.CoulombPotential(smearing=0.8), F32)})
_raises(
    "coulomb_error_without_smearing",
    lambda t: t.CoulombPotential(),
    ["lr_from_dist", "lr_from_k_sq", "background_correction"],
)

# --- InversePowerLawPotential --------------------------------------------------------


def _power_law(t, exponent, **options):
    return t.InversePowerLawPotential(exponent, **{"smearing": 0.8, **options})


table(
    {
        "power_law_all_exponents": lambda t: [
            {**_methods(_power_law(t, p)), "exponent": _power_law(t, p).exponent}
            for p in range(1, 7)
        ],
        "power_law_grads": lambda t: [_grads(_power_law(t, p)) for p in range(1, 7)],
    }
)
forms(
    "power_law_exponent",
    {
        "float": lambda: 3.0,
        "numpy_int64": lambda: np.int64(3),
        "tensor0d": lambda: _t(3.0),
        "tensor0d_int": lambda: torch.tensor(3),
        "bad_7": lambda: 7,
        "bad_2_5": lambda: 2.5,
    },
    lambda t, p: _methods(_power_law(t, p)),
)
table(
    {
        "power_law_exclusion_and_mask": lambda t: _methods(
            _power_law(t, 4, exclusion_radius=1.5, prefactor=3.0), mask=MASK
        ),
        "power_law_direct_from_dist": lambda t: [
            t.InversePowerLawPotential(p).from_dist(_t(DIST)) for p in (1, 3, 6)
        ],
        "power_law_slab_correction": lambda t: [
            _slab(t, _power_law(t, p)) for p in (1, 2)
        ],
    },
)
_raises(
    "power_law_error_without_smearing",
    lambda t: t.InversePowerLawPotential(4),
    ["lr_from_k_sq", "background_correction"],
)
table(
    {"power_law_float32": lambda t: [_methods(_power_law(t, p), F32) for p in (2, 5)]}
)

# --- SplinePotential -----------------------------------------------------------------


def _spline(t, dtype=F64, reciprocal=False, **options):
    r = torch.linspace(0.2, 8.0, 40, dtype=dtype)
    y = torch.erf(r) / r if reciprocal else torch.exp(-r) * torch.cos(r)
    return t.SplinePotential(r, y, reciprocal=reciprocal, **options)


def _spline_methods(potential, dtype=F64):
    return {
        **_methods(potential, dtype),
        "k_grid": potential.k_grid,
        "yhat_grid": potential.yhat_grid,
    }


table(
    {
        "spline_default": lambda t: _spline_methods(_spline(t, prefactor=2.0)),
        "spline_reciprocal": lambda t: _spline_methods(_spline(t, reciprocal=True)),
        "spline_reciprocal_at_zero": lambda t: _spline_methods(
            _spline(t, reciprocal=True, y_at_zero=1.128, yhat_at_zero=0.5, smearing=1.0)
        ),
        "spline_given_kernel": lambda t: _spline_methods(
            _spline(
                t,
                k_grid=torch.linspace(0, 6, 30, dtype=F64),
                yhat_grid=torch.exp(-torch.linspace(0, 6, 30, dtype=F64)),
                exclusion_radius=1.0,
            )
        ),
        "spline_grads": lambda t: _grads(_spline(t, reciprocal=True)),
        "spline_error_length": lambda t: t.SplinePotential(
            _t([1.0, 2.0, 3.0]), _t([1.0, 2.0])
        ),
        "spline_error_reciprocal_grid_at_zero": lambda t: t.SplinePotential(
            _t([0.0, 1.0, 2.0]), _t([1.0, 0.5, 0.2]), reciprocal=True
        ),
    },
)
table({"spline_float32": lambda t: _spline_methods(_spline(t, F32), F32)})

# --- CombinedPotential ---------------------------------------------------------------


def _combined(t, weights=(1.0, 0.5), smearing=0.8, **options):
    parts = [t.CoulombPotential(smearing=smearing), _power_law(t, 2, smearing=smearing)]
    if weights is not None:
        weights = _t(weights)
    return t.CombinedPotential(
        parts, initial_weights=weights, smearing=smearing, **options
    )


def _combined_weight_grads(t):
    potential = _combined(t)
    value = potential.lr_from_dist(_t(DIST)).sum() + potential.self_contribution()
    return torch.autograd.grad(value, potential.weights)


def _combined_kinds(t):
    return [
        type(_combined(t, learnable_weights=flag).weights).__name__
        for flag in (True, False, None)
    ]


table(
    {
        "combined_float64_weights": lambda t: _methods(_combined(t), mask=MASK),
        "combined_weight_grads": _combined_weight_grads,
        "combined_weight_kinds": _combined_kinds,
        "combined_default_weights_to_float64": lambda t: _methods(
            _combined(t, weights=None).to(F64)
        ),
        "combined_direct": lambda t: _combined(t, smearing=None).from_dist(_t(DIST)),
        "combined_exclusion_f_cutoff": lambda t: _combined(
            t, exclusion_radius=1.5
        ).f_cutoff(_t(DIST)),
        "combined_error_mixed": lambda t: t.CombinedPotential(
            [t.CoulombPotential(), t.CoulombPotential(smearing=1.0)], smearing=1.0
        ),
        "combined_error_missing_smearing": lambda t: t.CombinedPotential(
            [t.CoulombPotential(smearing=1.0)]
        ),
        "combined_error_smearing_for_direct": lambda t: t.CombinedPotential(
            [t.CoulombPotential()], smearing=1.0
        ),
        "combined_error_weight_count": lambda t: _combined(t, weights=(1.0, 2.0, 3.0)),
        "combined_error_empty": lambda t: t.CombinedPotential([]),
    },
)

# --- PotentialDipole -----------------------------------------------------------------


def _dipole_methods(potential, dtype=F64, volume=30.0):
    vectors = _t(VECTORS, dtype)
    return {
        "from_dist": potential.from_dist(vectors),
        "lr_from_dist": potential.lr_from_dist(vectors),
        "sr_from_dist": potential.sr_from_dist(vectors),
        "lr_from_k_sq": potential.lr_from_k_sq(_t(K_SQ, dtype)),
        "self_contribution": potential.self_contribution(),
        "background_correction": potential.background_correction(volume),
    }


def _dipole_grads(t):
    potential = t.PotentialDipole(smearing=0.8, exclusion_radius=1.5)
    vectors = _t(VECTORS).requires_grad_()
    return [
        torch.autograd.grad((getattr(potential, name)(vectors) ** 2).sum(), vectors)
        for name in ("from_dist", "lr_from_dist", "sr_from_dist")
    ]


forms(
    "dipole_smearing",
    {k: NUMBER_FORMS[k] for k in ("float", "numpy_float64", "int")},
    lambda t, s: _dipole_methods(t.PotentialDipole(smearing=s)),
)
table(
    {
        "dipole_epsilon_and_volume_tensor": lambda t: _dipole_methods(
            t.PotentialDipole(smearing=0.8, epsilon=1.0, prefactor=2.0), volume=_t(30.0)
        ),
        "dipole_exclusion": lambda t: _dipole_methods(
            t.PotentialDipole(smearing=0.8, exclusion_radius=1.5, exclusion_degree=2)
        ),
        "dipole_direct": lambda t: [
            t.PotentialDipole(exclusion_radius=1.5).f_cutoff(_t(VECTORS)),
            t.PotentialDipole().from_dist(_t(VECTORS)),
        ],
    },
)
_raises(
    "dipole_error_without_smearing",
    lambda t: t.PotentialDipole(),
    ["lr_from_dist", "sr_from_dist", "self_contribution", "f_cutoff"],
    inputs=VECTORS,
)


def _state_dict_keys(t):
    potentials = {
        "coulomb": t.CoulombPotential(smearing=0.8),
        "power_law": _power_law(t, 3),
        "spline": _spline(t),
        "combined": _combined(t),
        "dipole": t.PotentialDipole(smearing=0.8, exclusion_radius=1.0),
    }
    return {name: sorted(pot.state_dict()) for name, pot in potentials.items()}


def _scripted(t):
    """The methods torch-pme's scripted potential exports."""
    potential = torch.jit.script(t.CoulombPotential(smearing=0.8, exclusion_radius=2.0))
    dist, mask, k_sq = _t(DIST), torch.tensor(MASK), _t(K_SQ)
    return [
        potential.lr_from_dist(dist, mask),
        potential.sr_from_dist(dist, mask),
        potential.f_cutoff(dist, mask),
        potential.lr_from_k_sq(k_sq),
        potential.kernel_from_k_sq(k_sq),
    ]


table({"state_dict_keys": _state_dict_keys, "coulomb_torchscript": _scripted})

# --- deliberate differences ----------------------------------------------------------

STRICTER = "refused, where torch-pme gives meaningless numbers: "
DIPOLE = "no cancellation of 1/r^3 - erfc/r^3 at short range (agrees with 40 digits)"
DELIBERATE = {
    "spline_to_float32": (
        lambda t: _spline(t).to(F32).lr_from_dist(_t(DIST[2:], F32)),
        "a spline moved to float32 evaluates in float32 (torch-pme's stays in float64)",
    ),
    "coulomb_error_negative_smearing": (
        lambda t: t.CoulombPotential(smearing=-0.8).self_contribution(),
        STRICTER + "ValueError for smearing <= 0",
    ),
    "coulomb_error_exclusion_degree_0": (
        lambda t: t.CoulombPotential(exclusion_radius=1.0, exclusion_degree=0).f_cutoff(
            _t(DIST)
        ),
        STRICTER + "ValueError for exclusion_degree < 1",
    ),
    "dipole_grads": (_dipole_grads, DIPOLE, 1e-8),
    "dipole_float32": (
        lambda t: _dipole_methods(t.PotentialDipole(smearing=0.8, epsilon=0.5), F32),
        DIPOLE,
        1e-3,
    ),
    "combined_default_float32_weights": (
        lambda t: _methods(_combined(t, weights=None)),
        "float32 default weights combine float64 terms (RuntimeError in torch.inner there)",
    ),
    "combined_spline_and_coulomb": (
        lambda t: (
            t.CombinedPotential(
                [_spline(t, smearing=1.0), t.CoulombPotential(smearing=1.0)],
                smearing=1.0,
            )
            .to(F64)
            .self_contribution()
        ),
        "combines terms of shapes (1,) and () (RuntimeError in torch.stack there)",
    ),
}
deliberate(DELIBERATE)
