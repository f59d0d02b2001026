"""One mesh pipeline: spread, filter and gather as the stages of one linear map.

Every mesh computation of the library is an ordered part of one chain over a
:class:`~torchpme._core.mesh.MeshPlan` (``W_it``: the weight of atom ``i`` on node
``t``)::

    points ──spread──▶ mesh ──filter──▶ mesh ──gather──▶ points
    m_t = Σ_i q_i W_it     φ = s·IFFT[G·FFT m]    out_i = Σ_t W_it φ_t

:func:`torchpme._core.mesh.spread`, :func:`filter_mesh` and
:func:`torchpme._core.mesh.gather` run one stage (the ``lib`` classes),
:func:`torchpme._core.mesh.convolve` all three (PME and P3M potentials, batches,
:mod:`torchpme._core.mesh_energy`). All run :func:`run`, so a test of any stage
(adjointness, gradcheck, gradgradcheck) tests the path the calculators run.

The chain is linear in its input, and its adjoint is the reversed chain of
adjoint stages: spread* = gather, gather* = spread, filter* = filter (for a real
kernel even in ``k``, as every function of ``|k|²`` is). Each parameter enters one
stage, and its gradient pairs the input of that stage with the gradient ``g`` of
its output:

* spread: ``∂⟨g, spread(q)⟩/∂W_it = Σ_c q_ic g_ct``;
* gather: ``∂⟨g, gather(m)⟩/∂W_it = Σ_c g_ic m_ct``;
* filter: ``∂⟨g, filter(m)⟩/∂G(k) = s · w(k) · Re[FFT m · conj FFT g]`` (``w`` of
  :func:`torchpme._core.fft.multiplicity`).

The weight gradients reduce to the 1-D weights of the separable stencil
(:mod:`torchpme._core.stencil`). Two executors run a chain:

* :class:`_Pipeline`, one autograd Function (eager, ``torch.compile``, Triton
  kernels inside the stencil functions): the forward keeps only what the
  parameter gradients need (each channel's gather weight gradients, ``(C, N, 3,
  n)``; the filter's input spectrum if the kernel needs a gradient), never a mesh;
  the backward runs the adjoint chain once. With gradients on (second
  derivatives) the backward writes each gradient with single-stage pipelines, so
  every order of derivative runs this Function.
* :func:`_composed`: the same stages as plain differentiable operations, for
  TorchScript (which cannot compile autograd Functions) and complex kernels.

Inside the pipeline, values at atoms are ``(N, C)`` in the plan's sorted order and
meshes are flat ``(C, size)``; ``shape`` is the mesh shape, ``[n0, n1, n2]`` or
``[M, n0, n1, n2]`` for a stack of ``M`` meshes.
"""

from typing import List, Optional

import torch

from . import stencil
from .fft import (
    apply_kernel,
    differentiable_rfft3,
    inverse_transform,
    multiplicity,
    norm_scale,
    overlap,
    rfft3,
)

__all__ = [
    "filter_mesh",
    "forward_state",
    "kernel_gradient",
    "run",
]


def numel(shape: List[int]) -> int:
    size = 1
    for n in shape:
        size *= n
    return size


def _filter(box: List[torch.Tensor], kernel, shape: List[int], scale: float, keep):
    """``(filtered, spectrum)``: ``s · IFFT[G · FFT m]`` of the flat mesh handed
    over in ``box`` and, if ``keep``, its spectrum ``FFT m``.

    The mesh is taken out of the list, so it is freed once transformed (one
    mesh-sized tensor fewer at the peak); without ``keep`` the kernel multiplies
    the spectrum in place.
    """
    mesh = box.pop()
    flat_shape = mesh.shape
    sizes = (shape[-3], shape[-2], shape[-1])
    # one batch axis for the transforms, then the stack's axes for the kernel
    spectrum = rfft3(mesh.reshape((-1,) + sizes))
    spectrum = spectrum.reshape([-1] + shape[:-1] + [sizes[2] // 2 + 1])
    del mesh
    if keep:
        product = apply_kernel(spectrum, kernel)
    else:
        product = spectrum
        torch.view_as_real(product).mul_(kernel.unsqueeze(-1))
        spectrum = None
    filtered = inverse_transform(product, sizes)
    del product
    if scale != 1.0:
        filtered.mul_(scale)
    return filtered.reshape(flat_shape), spectrum


def kernel_gradient(
    spectrum: torch.Tensor,
    other: torch.Tensor,
    kernel: torch.Tensor,
    n_last: int,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``s · w(k) · Re[spectrum · conj other]`` summed to the kernel's shape;
    ``scale`` (a number, or a tensor that broadcasts, e.g. per mesh) is ``s``.
    Differentiable; in place on a fresh tensor outside autograd."""
    weight = multiplicity(n_last, other.shape[-1], other.real.dtype, other.device)
    product = overlap(spectrum, other)
    if torch.is_grad_enabled():
        return (product * (weight * scale)).sum_to_size(kernel.shape)
    return product.mul_(weight * scale).sum_to_size(kernel.shape)


def forward_state(
    stages,
    nodes: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    kernel: Optional[torch.Tensor],
    x: torch.Tensor,
    shape: List[int],
    scale: float,
    keep_spectrum: bool,
    keep_weight_grads: bool,
):
    """``(out, spectrum, weight_grads)``: the chain applied to ``x``, the filter's
    input spectrum if ``keep_spectrum`` and each channel's gather weight
    gradients ``(C, N, 3, n)`` if ``keep_weight_grads`` (see
    :func:`torchpme._core.stencil.gather_with_weight_gradients`); no autograd."""
    spectrum = weight_grads = None
    if "spread" in stages:
        x = stencil.scatter(nodes, weights, x, numel(shape))
    if "filter" in stages:
        box = [x]
        del x
        x, spectrum = _filter(box, kernel, shape, scale, keep_spectrum)
    if "gather" in stages:
        x, weight_grads = stencil.gather_with_weight_gradients(
            x, nodes, weights, keep_weight_grads
        )
    return x, spectrum, weight_grads


class _Pipeline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stages, nodes, weights, kernel, x, shape: List[int], scale):
        keep_spectrum = "filter" in stages and kernel.requires_grad
        keep_weight_grads = "gather" in stages and weights.requires_grad
        out, ctx.spectrum, ctx.weight_grads = forward_state(
            stages, nodes, weights, kernel, x, shape, scale,
            keep_spectrum, keep_weight_grads,
        )  # fmt: skip
        ctx.save_for_backward(nodes, weights, kernel, x)
        ctx.stages, ctx.shape, ctx.scale = stages, shape, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        nodes, weights, kernel, x = ctx.saved_tensors
        needs = ctx.needs_input_grad
        wanted = (needs[2], needs[3], needs[4])
        inputs = (nodes, weights, kernel, x)
        if torch.is_grad_enabled():  # second derivatives
            grads = _differentiable_gradients(ctx, inputs, grad, wanted)
        else:
            grads = _adjoint(ctx, inputs, grad, wanted)
        return (None, None) + grads + (None, None)


def _adjoint(ctx, inputs, grad, wanted):
    """``(weights, kernel, x)`` gradients: the adjoint chain run once on ``grad``,
    the parameter gradients from the state kept by the forward pass."""
    nodes, weights, kernel, x = inputs
    need_weights, need_kernel, need_x = wanted
    spreads, filters = "spread" in ctx.stages, "filter" in ctx.stages
    grad_weights = grad_kernel = None
    g = grad
    if "gather" in ctx.stages:
        if need_weights:
            grad_weights = stencil.combine_weight_gradients(g, ctx.weight_grads)
        if not (need_x or (filters and need_kernel) or (spreads and need_weights)):
            return grad_weights, None, None
        g = stencil.scatter(nodes, weights, g, numel(ctx.shape))
    if filters:
        box = [g]
        del g
        g, spectrum = _filter(box, kernel, ctx.shape, ctx.scale, need_kernel)
        if need_kernel:
            grad_kernel = kernel_gradient(
                ctx.spectrum, spectrum, kernel, ctx.shape[-1], ctx.scale
            )
        if not (need_x or (spreads and need_weights)):
            return grad_weights, grad_kernel, None
    if spreads:
        g, grads = stencil.gather_with_weight_gradients(g, nodes, weights, need_weights)
        if need_weights:
            part = stencil.combine_weight_gradients(x, grads)
            grad_weights = part if grad_weights is None else grad_weights + part
    return grad_weights, grad_kernel, g if need_x else None


def _differentiable_gradients(ctx, inputs, grad, wanted):
    """The gradients of :func:`_adjoint` as differentiable expressions: the inputs
    of the stages whose parameters need a gradient are recomputed by single-stage
    pipelines (as activation checkpointing does), and the adjoint chain runs
    through single-stage pipelines, so every order of derivative runs
    :class:`_Pipeline`."""
    nodes, weights, kernel, x = inputs
    need_weights, need_kernel, need_x = wanted
    stages, shape, scale = ctx.stages, ctx.shape, ctx.scale
    spreads, filters = "spread" in stages, "filter" in stages

    def stage(name, value):
        return _Pipeline.apply((name,), nodes, weights, kernel, value, shape, scale)

    mesh = None  # the input of the filter (or of the gather without a filter)
    if (filters and need_kernel) or ("gather" in stages and need_weights):
        mesh = stage("spread", x) if spreads else x
    grad_weights = grad_kernel = None
    g = grad
    if "gather" in stages:
        if need_weights:
            gathered = stage("filter", mesh) if filters else mesh
            grad_weights = _weight_gradient(g, gathered, nodes, weights)
        g = stage("spread", g)
    if filters:
        if need_kernel:
            spectra = [differentiable_rfft3(m.reshape([-1] + shape)) for m in (mesh, g)]
            grad_kernel = kernel_gradient(*spectra, kernel, shape[-1], scale)
        g = stage("filter", g)
    if spreads:
        if need_weights:
            part = _weight_gradient(x, g, nodes, weights)
            grad_weights = part if grad_weights is None else grad_weights + part
        g = stage("gather", g)
    return grad_weights, grad_kernel, g if need_x else None


def _weight_gradient(points, mesh, nodes, weights):
    """``∂/∂w`` of ``Σ_ict points_ic W_it mesh_ct`` (the pairing of both weight
    gradients), differentiable: ``(N, 3, n)``."""
    field = torch.einsum("ic,cti->ti", points, stencil.pick(mesh, nodes))
    return stencil.weight_gradients(field, weights)


def _composed(
    stages: List[str],
    nodes: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    kernel: Optional[torch.Tensor],
    x: torch.Tensor,
    shape: List[int],
    scale: float,
) -> torch.Tensor:
    """The chain as plain differentiable operations (TorchScript, complex kernels)."""
    if "spread" in stages:
        assert nodes is not None and weights is not None
        x = stencil.scatter(nodes, weights, x, numel(shape))
    if "filter" in stages:
        assert kernel is not None
        dims = [-3, -2, -1]
        spectrum = torch.fft.rfftn(x.reshape([-1] + shape), dim=dims)
        filtered = torch.fft.irfftn(
            spectrum * kernel, s=shape[-3:], dim=dims, norm="forward"
        )
        x = (filtered * scale).reshape(x.shape)
    if "gather" in stages:
        assert nodes is not None and weights is not None
        x = stencil.contract(stencil.pick(x, nodes), weights).t()
    return x


@torch.jit.unused
def _function(
    stages: List[str],
    nodes: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    kernel: Optional[torch.Tensor],
    x: torch.Tensor,
    shape: List[int],
    scale: float,
) -> torch.Tensor:
    return _Pipeline.apply(tuple(stages), nodes, weights, kernel, x, shape, scale)


def run(
    stages: List[str],
    nodes: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    kernel: Optional[torch.Tensor],
    x: torch.Tensor,
    shape: List[int],
    scale: float = 1.0,
) -> torch.Tensor:
    """Run a chain of stages (an ordered part of ``["spread", "filter", "gather"]``).

    Args:
        stages: the stages, in order.
        nodes, weights: the plan's ``stencil`` and ``weights`` ``(N, 3, n)`` (in
            the dtype of ``x``), for spread and gather.
        kernel: real filter broadcastable to ``(C, [M,] n0, n1, n2//2+1)`` (or
            complex), for filter.
        x: ``(N, C)`` values at the sorted atoms, or a flat ``(C, size)`` mesh.
        shape: the mesh shape, ``[n0, n1, n2]`` or ``[M, n0, n1, n2]``.
        scale: the filter's factor ``s`` (:func:`~torchpme._core.fft.norm_scale`).

    Returns:
        ``(N, C)`` values at the sorted atoms, or a flat ``(C, size)`` mesh.
    """
    if kernel is not None and not kernel.is_complex():
        kernel = kernel.to(x.dtype)
    if torch.jit.is_scripting():
        return _composed(stages, nodes, weights, kernel, x, shape, scale)
    if kernel is not None and kernel.is_complex():
        return _composed(stages, nodes, weights, kernel, x, shape, scale)
    return _function(stages, nodes, weights, kernel, x, shape, scale)


def filter_mesh(
    mesh: torch.Tensor, kernel: torch.Tensor, fft_norm: str, ifft_norm: str
) -> torch.Tensor:
    """Convolve a real mesh with a kernel given in reciprocal space.

    ``irfftn(rfftn(mesh, norm=fft_norm) · kernel, norm=ifft_norm)`` over the last
    three axes. A real kernel must be even in ``k`` (a function of ``|k|²``), which
    makes the map self-adjoint; the backward pass relies on it.

    Args:
        mesh: ``(..., n0, n1, n2)`` real values, e.g. ``(C, n0, n1, n2)``.
        kernel: filter broadcastable to ``(..., n0, n1, n2//2+1)``.
        fft_norm, ifft_norm: ``"ortho"``, ``"forward"`` or ``"backward"``.

    Returns:
        the filtered mesh, shape of ``mesh``.
    """
    sizes = [mesh.shape[-3], mesh.shape[-2], mesh.shape[-1]]
    shape = list(mesh.shape[1:]) if mesh.dim() > 3 else sizes
    scale = norm_scale(fft_norm, ifft_norm, numel(sizes))
    flat = mesh.reshape(-1, numel(shape))
    return run(["filter"], None, None, kernel, flat, shape, scale).reshape(mesh.shape)
