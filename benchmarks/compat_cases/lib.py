"""``torchpme.lib``: math helpers, k-vectors, mesh interpolation, k-space filters and
splines, called with the argument forms users pass (numbers, NumPy scalars, 0-dim
tensors, float32 and float64 tensors), their gradients, and the documented errors.
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
CELL = [[5.0, 0.0, 0.0], [0.5, 4.5, 0.0], [0.3, 0.2, 4.0]]
BOX = [[4.0, 0.0, 0.0], [0.0, 4.5, 0.0], [0.0, 0.0, 5.0]]


def _points(n=5, dtype=F64):
    """Positions (some outside the cell) and two channels of charges."""
    rng = np.random.default_rng(3)
    positions = (rng.random((n, 3)) * 1.4 - 0.2) @ np.array(CELL)
    return _t(positions, dtype), _t(rng.normal(size=(n, 2)), dtype)


def _ones(*shape):
    return torch.ones(shape, dtype=F64)


def _with_grad(function, values):
    """``function(x)`` and the gradient of its sum with respect to ``x``."""
    x = _t(values).requires_grad_()
    value = function(x)
    return value, torch.autograd.grad(value.sum(), x)[0]


# --- 3.1 math helpers --------------------------------------------------------------

GAMMA_X = [0.5, 1.0, 2.5, 4.0, 7.3, -0.5, -1.5]
EXP1_X = [1e-8, 1e-3, 0.5, 1.0, 1.0000001, 2.0, 10.0, 35.0, 0.0, -1.0, float("nan")]
Z = [0.01, 0.1, 1.0, 3.0, 20.0]
GRID_2D = [[0.2, 0.9, 1.5], [3.0, 8.0, 0.05]]


def _gammaincc_all(t, z):
    return [t.lib.gammaincc_over_powerlaw(p, z) for p in range(1, 7)]


table(
    {
        "gamma_float64": lambda t: t.lib.gamma(_t(GAMMA_X)),
        "exp1_float64": lambda t: t.lib.exp1(_t(EXP1_X)),
        "gamma_exp1_grads_2d": lambda t: [
            _with_grad(f, GRID_2D) for f in (t.lib.gamma, t.lib.exp1)
        ],
        "exp1_only_series_and_empty": lambda t: [
            t.lib.exp1(_t(x)) for x in ([0.3, 0.7], [])
        ],
        "gammaincc_all_exponents": lambda t: _gammaincc_all(t, _t(Z)),
        "gammaincc_grad": lambda t: _with_grad(
            lambda z: torch.stack(_gammaincc_all(t, z)), Z
        ),
    },
)
table(
    {
        "math_float32": lambda t: [
            t.lib.gamma(_t(GAMMA_X, F32)),
            t.lib.exp1(_t(EXP1_X[:8], F32)),
            *_gammaincc_all(t, _t(Z, F32)),
        ]
    }
)
_EXPONENTS = {
    "float": lambda: 4.0,
    "tensor0d_float64": lambda: _t(4.0),
    "tensor0d_int": lambda: torch.tensor(4),
    "numpy_float64": lambda: np.float64(4.0),
    "bad_7": lambda: 7,
    "bad_tensor_2_5": lambda: _t(2.5),
}
forms(
    "gammaincc_exponent",
    _EXPONENTS,
    lambda t, p: t.lib.gammaincc_over_powerlaw(p, _t([0.5, 2.0])),
)

# --- 3.2 k-vectors -----------------------------------------------------------------

_SPACINGS = {
    "float": lambda: 0.7,
    "int": lambda: 1,
    "numpy_float64": lambda: np.float64(0.7),
    "numpy_float32": lambda: np.float32(0.7),
    "tensor0d": lambda: _t(0.7),
}
forms("get_ns_mesh_spacing", _SPACINGS, lambda t, h: t.lib.get_ns_mesh(_t(CELL), h))
forms(
    "batched_kvectors_wavelength",
    {form: _SPACINGS[form] for form in ("float", "numpy_float32", "tensor0d")},
    lambda t, lr: t.lib.compute_batched_kvectors(lr, torch.stack([_t(CELL), _t(BOX)])),
)


def _kvectors(t, dtype=F64, ns_list=([4, 5, 6], [1, 2, 3], [3, 3, 3]), cell=None):
    cell = _t(CELL, dtype) if cell is None else cell
    return [
        getattr(t.lib, f"generate_kvectors_for_{kind}")(cell, torch.tensor(ns))
        for kind in ("mesh", "ewald")
        for ns in ns_list
    ]


def _kvectors_grad(t):
    cell = _t(CELL).requires_grad_()
    k = _kvectors(t, ns_list=([3, 4, 2],), cell=cell)
    return [torch.autograd.grad((kind**2).sum(), cell) for kind in k]


def _bad(t, kind, cell, n_ns):
    return getattr(t.lib, f"generate_kvectors_for_{kind}")(cell, torch.full((n_ns,), 4))


table(
    {
        "kvectors_float64": _kvectors,
        "kvectors_grad_cell": _kvectors_grad,
        "kvectors_mesh_bad_cell": lambda t: _bad(t, "mesh", _ones(2, 3), 3),
        "kvectors_ewald_bad_ns": lambda t: _bad(t, "ewald", _ones(3, 3), 2),
    }
)
table(
    {
        "kvectors_float32": lambda t: [
            *_kvectors(t, F32),
            t.lib.compute_batched_kvectors(1.1, _t(CELL, F32)[None]),
            t.lib.get_ns_mesh(torch.diag(torch.tensor([1.5, 3.5, 7.5])), 1.0),
            t.lib.kvectors.get_ns_mesh(_t(CELL, F32), 0.3),
        ]
    }
)

# --- 3.3 MeshInterpolator ------------------------------------------------------------


NL, NP = range(3, 8), range(1, 6)


def _interpolator(t, method="Lagrange", nodes=4, ns=(6, 7, 8), dtype=F64, cell=CELL):
    return t.lib.MeshInterpolator(_t(cell, dtype), torch.tensor(ns), nodes, method)


def _interpolate(t, method, nodes, ns=(6, 7, 8), dtype=F64):
    positions, charges = _points(dtype=dtype)
    interpolator = _interpolator(t, method, nodes, ns, dtype)
    interpolator.compute_weights(positions)
    mesh = interpolator.points_to_mesh(charges)
    return interpolator.interpolation_weights, mesh, interpolator.mesh_to_points(mesh)


def _documented_weights(t):
    weights = []
    for method, nodes in (("Lagrange", 4), ("P3M", 3)):
        interpolator = _interpolator(t, method, nodes, ns=(8, 8, 8))
        interpolator.compute_weights(_t([[0.1, 0.2, 0.3]]))
        weights.append(interpolator.interpolation_weights)
    return weights


def _stencil(t):
    interpolator = _interpolator(t, "P3M", 3, ns=(4, 5, 6))
    interpolator.compute_weights(_points()[0])
    return interpolator.x_indices, interpolator.y_indices, interpolator.z_indices


def _updated(t):
    interpolator = _interpolator(t, ns=(2, 3, 4))
    before = interpolator.get_mesh_xyz()
    interpolator.update()
    interpolator.update(cell=_t(BOX))
    interpolator.update(ns_mesh=torch.tensor([3, 3, 2]))
    positions, charges = _points()
    interpolator.compute_weights(positions)
    after = interpolator.points_to_mesh(charges[:, :1])
    return before, interpolator.get_mesh_xyz(), after


def _mesh_grad(t, method, nodes):
    positions, charges = (x.requires_grad_() for x in _points())
    interpolator = _interpolator(t, method, nodes, ns=(5, 6, 7))
    interpolator.compute_weights(positions)
    mesh = interpolator.points_to_mesh(charges)
    value = (interpolator.mesh_to_points(mesh * mesh) * charges).sum()
    return torch.autograd.grad(value, (positions, charges))


def _weighted(t, positions=None):
    interpolator = _interpolator(t, ns=(4, 4, 4))
    interpolator.compute_weights(_points()[0] if positions is None else positions)
    return interpolator


table(
    {
        "mesh_lagrange_all_nodes": lambda t: [
            _interpolate(t, "Lagrange", n) for n in NL
        ],
        "mesh_p3m_all_nodes": lambda t: [_interpolate(t, "P3M", n) for n in NP],
        "mesh_small_mesh_wraps": lambda t: _interpolate(t, "P3M", 5, ns=(2, 3, 1)),
        "mesh_documented_weights": _documented_weights,
        "mesh_stencil_indices": _stencil,
        "mesh_weights_of_other_dtypes": lambda t: [
            _weighted(t).points_to_mesh(torch.ones(5, 1, dtype=d))
            for d in (F32, torch.int64)
        ],
        "mesh_xyz_and_update": _updated,
        "mesh_grad": lambda t: [_mesh_grad(t, "Lagrange", 5), _mesh_grad(t, "P3M", 4)],
        "mesh_error_method_lowercase": lambda t: _interpolator(t, method="lagrange"),
        "mesh_error_lagrange_2_nodes": lambda t: _interpolator(t, nodes=2),
        "mesh_error_p3m_6_nodes": lambda t: _interpolator(t, method="P3M", nodes=6),
        "mesh_error_cell_shape": lambda t: _interpolator(t, cell=[[1.0, 0.0]]),
        "mesh_error_ns_shape": lambda t: _interpolator(t, ns=(4, 4)),
        "mesh_error_positions_shape": lambda t: _weighted(t, _ones(4, 2)),
        "mesh_error_weights_1d": lambda t: _weighted(t).points_to_mesh(_ones(5)),
        "mesh_error_mesh_3d": lambda t: _weighted(t).mesh_to_points(_ones(4, 4, 4)),
    },
)
table({"mesh_float32": lambda t: _interpolate(t, "Lagrange", 4, dtype=F32)})

# --- 3.4 k-space filters -------------------------------------------------------------


PME_NORMS = {"fft_norm": "backward", "ifft_norm": "forward"}


def _mesh_values(channels=2, dtype=F64, ns=(6, 7, 8)):
    return _t(np.random.default_rng(7).normal(size=(channels, *ns)), dtype)


def _gaussian(t, width=0.7, channels=0):
    """A user-written kernel; with ``channels``, one filter per channel."""

    class Gaussian(t.lib.KSpaceKernel):
        def __init__(self):
            super().__init__()
            self.width = width

        def kernel_from_k_sq(self, k_sq):
            kernel = torch.exp(-0.5 * self.width**2 * k_sq)
            if channels:
                kernel = torch.stack([kernel * (c + 1) for c in range(channels)])
            return kernel

    return Gaussian()


def _filter(t, kernel=None, cell=CELL, dtype=F64, p3m_nodes=0, **options):
    kernel = t.CoulombPotential(smearing=0.8) if kernel is None else kernel
    ns = torch.tensor([6, 7, 8])
    if p3m_nodes:
        return t.lib.P3MKSpaceFilter(_t(cell, dtype), ns, p3m_nodes, kernel, **options)
    return t.lib.KSpaceFilter(_t(cell, dtype), ns, kernel, **options)


def _filtered(t, channels=2, dtype=F64, **options):
    return _filter(t, dtype=dtype, **options)(_mesh_values(channels, dtype))


def _refiltered(t):
    kfilter = _filter(t, _gaussian(t))
    before = kfilter(_mesh_values())
    kfilter.kernel.width = 1.4
    kfilter.update()
    after = kfilter(_mesh_values())
    kfilter.update(cell=_t(BOX), ns_mesh=torch.tensor([6, 7, 8]))
    return before, after, kfilter(_mesh_values())


def _filter_grad(t):
    mesh = _mesh_values().requires_grad_()
    return torch.autograd.grad((_filter(t)(mesh) ** 2).sum(), mesh)


table(
    {
        f"kspace_filter_{fft}_{ifft}": lambda t, f=fft, i=ifft: _filtered(
            t, kernel=_gaussian(t), fft_norm=f, ifft_norm=i
        )
        for fft, ifft in (("ortho", "ortho"), ("backward", "forward"))
    },
)
table(
    {
        "kspace_filter_coulomb_one_channel": lambda t: _filtered(t, channels=1),
        "kspace_filter_per_channel_kernel": lambda t: _filtered(
            t, channels=3, kernel=_gaussian(t, channels=3)
        ),
        "kspace_filter_update_after_kernel_change": _refiltered,
        "kspace_filter_grad": _filter_grad,
        "kspace_kernel_base_not_implemented": lambda t: (
            t.lib.KSpaceKernel().kernel_from_k_sq(torch.ones(3))
        ),
        "kspace_filter_error_fft_norm": lambda t: _filter(t, fft_norm="none"),
        "kspace_filter_error_ifft_norm": lambda t: _filter(t, ifft_norm="Ortho"),
        "kspace_filter_error_mesh_3d": lambda t: _filter(t)(_ones(6, 7, 8)),
        "kspace_filter_error_mesh_size": lambda t: _filter(t)(_ones(1, 6, 6, 8)),
        "p3m_filter_error_mode_4": lambda t: _filter(t, p3m_nodes=3, mode=4),
        "p3m_filter_error_order_7": lambda t: _filter(
            t, p3m_nodes=3, differential_order=7
        ),
        "p3m_filter_box_all_nodes": lambda t: [
            _filtered(t, cell=BOX, p3m_nodes=n, **PME_NORMS) for n in NP
        ],
    },
)
table({"kspace_filter_float32": lambda t: _filtered(t, dtype=F32)})

# --- 3.5 splines ---------------------------------------------------------------------

EVAL_AT = [0.0, 0.2, 0.5, 0.75, 1.0, 2.9, 6.0, 7.5, 30.0]


def _grid(dtype=F64, requires_grad=False):
    x = torch.linspace(0.5, 6.0, 12, dtype=dtype)
    return x, (torch.exp(-x) * torch.cos(x)).requires_grad_(requires_grad)


def _second_derivatives(t):
    x, y = _grid(requires_grad=True)
    d2y = t.lib.compute_second_derivatives(x, y)
    return d2y, torch.autograd.grad((d2y * torch.arange(12.0)).sum(), y)


def _spline(t, dtype=F64):
    x, y = _grid(dtype, requires_grad=dtype == F64)
    where = _t(EVAL_AT, dtype).requires_grad_()
    values = t.lib.CubicSpline(x, y)(where)
    inputs = (where, y) if dtype == F64 else (where,)
    return values, torch.autograd.grad(values.sum(), inputs)


def _cubic(t):
    return t.lib.CubicSpline(*_grid())


def _reciprocal(t, y_at_zero):
    spline = t.lib.CubicSplineReciprocal(*_grid(), y_at_zero=y_at_zero)
    return _with_grad(spline, EVAL_AT)


def _spline_ft(t, k, grad=False):
    x, y = _grid(requires_grad=grad)
    value = t.lib.compute_spline_ft(k, x, y, t.lib.compute_second_derivatives(x, y))
    return torch.autograd.grad(value.sum(), y) if grad else value


table(
    {
        "spline_second_derivatives_and_grad": _second_derivatives,
        "cubic_spline_values_and_grads": _spline,
        "cubic_spline_state_dict": lambda t: sorted(_cubic(t).state_dict()),
        "spline_ft_documented": lambda t: _spline_ft(t, _t([0.0, 0.3, 1.0, 2.5])),
        "spline_ft_2d_k": lambda t: _spline_ft(t, _t(EVAL_AT[1:7]).view(2, 3)),
    },
)
table(
    {
        "cubic_spline_float32": lambda t: _spline(t, F32),
        "spline_ft_float32_k": lambda t: _spline_ft(t, _t([0.0, 0.5, 2.0], F32)),
    }
)
forms(
    "cubic_spline_reciprocal_y_at_zero",
    {"none": lambda: None, "tensor0d": lambda: _t(1.25), "float": lambda: 1.25},
    _reciprocal,
)

# --- deliberate differences ----------------------------------------------------------

STRICTER = "refused earlier, where torch-pme fails later: "
DELIBERATE = {
    "get_ns_mesh_error_spacing_none": (
        lambda t: t.lib.get_ns_mesh(_t(CELL), None),
        STRICTER + "ValueError for a mesh_spacing not > 0 (TypeError there)",
    ),
    "mesh_error_positions_float32": (
        lambda t: _interpolator(t).compute_weights(_points(dtype=F32)[0]),
        STRICTER
        + "TypeError for positions not in the cell's dtype (RuntimeError there)",
    ),
    "mesh_error_weights_rows": (
        lambda t: _weighted(t).points_to_mesh(_ones(3, 1)),
        STRICTER + "ValueError for a row count not the positions' (RuntimeError there)",
    ),
    "mesh_error_larger_mesh": (
        lambda t: _weighted(t).mesh_to_points(_ones(1, 5, 5, 5)),
        "refuses a mesh larger than ns_mesh (torch-pme reads its corner)",
    ),
    "kspace_filter_mesh_nz_mismatch": (
        lambda t: _filter(t)(_ones(1, 6, 7, 9)),
        "refuses nz=9 for a filter built for nz=8 (torch-pme compares rfft'd shapes)",
    ),
    "p3m_filter_mode_1": (
        lambda t: _filtered(t, p3m_nodes=3, mode=1),
        "P3MKSpaceFilter modes 1-3 work (torch-pme: AttributeError for _diff_coeff)",
    ),
    "p3m_filter_skewed_cell": (
        lambda t: _filtered(t, p3m_nodes=3),
        "P3M influence along the lattice vectors, exact for skewed cells (same for boxes)",
        0.05,
    ),
    "exp1_error_python_float": (
        lambda t: t.lib.exp1(0.5),
        "a Python float is refused with AttributeError (TypeError there)",
    ),
    "kspace_filter_float32_mesh": (
        lambda t: _filter(t)(_mesh_values(1, F32)),
        "a float32 mesh is promoted to the filter's float64 before its transform "
        "(torch-pme transforms it in float32, then promotes)",
        1e-6,
    ),
    "cubic_spline_float32_x": (
        lambda t: _cubic(t)(_t(EVAL_AT, F32)),
        "a float64 spline evaluates float32 points in float32 (the dtype follows "
        "the inputs, as for every potential; torch-pme promotes to the knots')",
        1e-6,
    ),
    "spline_ft_grad_y": (
        lambda t: _spline_ft(t, _t([0.1, 0.8, 2.0, 4.0]), grad=True),
        "the gradient includes the tail's (detached in torch-pme); matches finite diffs",
    ),
}
deliberate(DELIBERATE)
