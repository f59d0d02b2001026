"""Points → mesh → filter → points as one linear map with its own backward pass.

The mesh part of PME and P3M is ``φ = Wᵀ A W q``: spread the values ``q`` with the
interpolation weights ``W``, convolve with the filter ``A`` (self-adjoint, see
:mod:`torchpme._core.fft`), gather back. Composing the three autograd Functions of
:mod:`torchpme._core.stencil` and :mod:`torchpme._core.fft` keeps every full mesh
alive for the backward pass and, for an upstream gradient ``g``, spreads ``g``,
filters it (two FFTs) and gathers it again. As one Function:

- the forward keeps only the picked stencil values of ``A W q`` (``n³`` per atom
  and channel), not the meshes;
- the backward is symmetric in ``q`` and ``g`` (``Wᵀ A W`` is symmetric): when ``g``
  is proportional to ``q`` per channel, as for an energy ``E = Σ_i q_i φ_i``, the
  mesh gradient ``A W g`` is ``c · A W q``, already picked in the forward, so the
  backward touches no mesh and runs no FFT. The proportionality is checked on the
  ``N`` values (a host read, so on CPU and in eager mode only); otherwise the
  backward spreads, filters and gathers ``g`` (two FFTs).
- :func:`convolve_energy` returns the energy itself: its backward knows that
  ``g = (∂L/∂E) · q`` without reading anything, so it takes the same shortcut on
  every device and under ``torch.compile``.

Batches transform a few meshes at a time from one plan (:func:`convolve_stacks`).

Second derivatives (forces in a loss) re-run the composed differentiable Functions
inside the backward pass, like activation checkpointing.
"""

from typing import List, Tuple

import torch

from . import stencil
from .backward import channel_factors, replay
from .fft import (
    _apply_kernel,
    _multiplicity,
    _overlap,
    differentiable_filter,
    filter_mesh,
    irfft3,
    rfft3,
)
from .mesh import MeshPlan, mesh_shape
from .permutation import permute_rows

__all__ = ["convolve", "convolve_energy", "convolve_stacks"]


def _spectrum(nodes, weights, values, shape: List[int]) -> torch.Tensor:
    """``rfftn`` of the spread values, ``(C, [M,] n0, n1, n2//2+1)``; the real mesh
    is freed on return (only one mesh-sized tensor is alive at a time)."""
    sizes = (shape[-3], shape[-2], shape[-1])
    mesh = stencil.scatter(nodes, weights, values, _numel(shape))
    half = [values.shape[1]] + shape[:-1] + [sizes[2] // 2 + 1]
    # one batch axis: the transforms of a (C, M, n0, n1, n2) stack of meshes run
    # twice as fast on (C·M, n0, n1, n2)
    return rfft3(mesh.reshape((-1,) + sizes)).reshape(half)


def _inverse(product: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
    """``irfftn(norm="forward")`` (no ``1/M``) over the last three axes, as
    ``(C·M, n0, n1, n2)``."""
    product = product.reshape((-1,) + product.shape[-3:])
    if product.shape[0] > 1:
        # for a stack, two steps beat the 3-D complex-to-real transform (2×, MKL)
        rows = torch.fft.ifft2(product, dim=(-3, -2), norm="forward")
        return torch.fft.irfft(rows, n=sizes[2], dim=-1, norm="forward")
    return irfft3(product, sizes)


def _filtered_values(
    nodes, weights, values, kernel, shape: List[int], keep: bool, weight_grads: bool
):
    """``(spectrum, out, grads)``: ``A W values`` at the atoms ``(N, C)``, the
    spectrum of ``W values`` if ``keep`` (for the kernel gradient) and, if
    ``weight_grads``, the weight gradients of each channel's gather (see
    :func:`stencil.gather_with_weight_gradients`).

    Without ``keep`` the kernel is applied in place; at most two mesh-sized tensors
    are alive at a time.
    """
    sizes = (shape[-3], shape[-2], shape[-1])
    spectrum = _spectrum(nodes, weights, values, shape)
    if keep:
        product = _apply_kernel(spectrum, kernel)
    else:
        product = spectrum
        torch.view_as_real(product).mul_(kernel.unsqueeze(-1))
        spectrum = None
    filtered = _inverse(product, sizes)
    del product
    out, grads = stencil.gather_with_weight_gradients(
        filtered.reshape(values.shape[1], -1), nodes, weights, weight_grads
    )
    return spectrum, out, grads


def _convolution_from_ops(nodes, weights, values, kernel, shape: List[int]):
    """The same map from the differentiable Functions (for second derivatives)."""
    mesh = stencil.spread_values(nodes, weights, values, _numel(shape))
    filtered = filter_mesh(mesh.reshape([-1] + shape), kernel, "backward", "forward")
    return stencil.gather_values(nodes, weights, filtered.reshape(mesh.shape))


def _numel(shape: List[int]) -> int:
    size = 1
    for n in shape:
        size *= n
    return size


def _forward_pass(ctx, nodes, weights, values, kernel, shape: List[int]):
    """``A W values`` at the atoms; keeps on ``ctx`` what a backward pass that
    reuses it needs (the spectrum if the kernel needs a gradient, the weight
    gradients if the weights do)."""
    spectrum, output, weight_grads = _filtered_values(
        nodes, weights, values, kernel, shape, kernel.requires_grad,
        weights.requires_grad,
    )  # fmt: skip
    ctx.save_for_backward(nodes, weights, values, kernel)
    ctx.shape = shape
    ctx.weight_grads = weight_grads
    ctx.spectrum = spectrum
    return output


class _Convolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nodes, weights, values, kernel, shape: List[int]):
        output = _forward_pass(ctx, nodes, weights, values, kernel, shape)
        ctx.output = output.detach() if values.requires_grad else None
        return output

    @staticmethod
    def backward(ctx, grad):
        nodes, weights, values, kernel = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = _convolution_from_ops(nodes, weights, values, kernel, ctx.shape)
            inputs = [None, weights, values, kernel, None]
            return replay(output, inputs, ctx.needs_input_grad, grad)
        factors = channel_factors(grad, values)
        if factors is not None:
            # A W g = c · A W q: everything below reuses the forward pass
            c = torch.tensor(factors, dtype=grad.dtype, device=grad.device)
            return _reused_gradients(ctx, c, grad + c * values, c)
        grad_weights = grad_values = grad_kernel = None
        grad_spectrum, filtered_grad, grad_weight_grads = _filtered_values(
            nodes, weights, grad, kernel, ctx.shape, needs[3], needs[1]
        )
        if needs[2]:
            grad_values = filtered_grad
        if needs[1]:
            grad_weights = stencil.combine_weight_gradients(grad, ctx.weight_grads)
            grad_weights += stencil.combine_weight_gradients(values, grad_weight_grads)
        if needs[3]:
            grad_kernel = _kernel_gradient(ctx, _overlap(ctx.spectrum, grad_spectrum))
        return None, grad_weights, grad_values, grad_kernel, None


class _ConvolutionEnergy(torch.autograd.Function):
    """``E = Σ_ic q_ic (Wᵀ A W q)_ic``: the upstream gradient of the potentials is
    ``(∂L/∂E) · q``, known without reading any value, so the backward reuses the
    forward pass on every device (no transform, no host synchronisation)."""

    @staticmethod
    def forward(ctx, nodes, weights, values, kernel, shape: List[int]):
        ctx.output = _forward_pass(ctx, nodes, weights, values, kernel, shape)
        return torch.sum(values * ctx.output)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # second derivatives
            return _differentiable_energy_gradients(ctx, grad)
        values = ctx.saved_tensors[2]
        # the explicit q of E and the upstream g·q of the potentials: twice each
        return _reused_gradients(ctx, grad, 2.0 * grad * values, 2.0 * grad)


def _differentiable_energy_gradients(ctx, grad):
    """The gradients of ``E = ρᵀ A ρ`` (``ρ = W q``) for second derivatives (forces
    or stress in a loss), as differentiable expressions of one spectrum ``S = FFT
    ρ`` and filtered mesh ``φ = A ρ``: ``∂E/∂q = 2 Wᵀ φ``, ``∂E/∂W_it = 2 Σ_c q_ic
    φ_ct`` (``A`` is symmetric; through the separable weights at the picked stencil
    values) and ``∂E/∂G = w |S|²`` for the kernel. Replaying the composed map
    instead (``ρᵀAρ`` differentiated by autograd) transforms twice here and twice
    more in the next backward pass; this transforms once each."""
    nodes, weights, values, kernel = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mesh = stencil.spread_values(nodes, weights, values, _numel(ctx.shape))
    spectrum, filtered = differentiable_filter(mesh.reshape([-1] + ctx.shape), kernel)
    picked = stencil.pick(filtered.reshape(mesh.shape), nodes)  # (C, n³, N)
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = (2.0 * grad) * stencil.contract(picked, weights).t()
    if needs[1]:
        field = torch.einsum("ic,cti->ti", values, picked)
        grad_weights = (2.0 * grad) * stencil.weight_gradients(field, weights)
    if needs[3]:
        weight = _multiplicity(
            ctx.shape[-1], spectrum.shape[-1], spectrum.real.dtype, grad.device
        )
        power = _overlap(spectrum, spectrum) * (grad * weight)
        grad_kernel = power.sum_to_size(kernel.shape)
    return None, grad_weights, grad_values, grad_kernel, None


def _reused_gradients(ctx, c, weight_coefficients, value_factor):
    """The gradients of a convolution whose potentials' upstream gradient is
    ``c · q`` (``c`` per channel, or one number), from its forward pass alone:
    ``value_factor · A W q`` for the values, ``weight_coefficients`` against the
    kept weight gradients, ``c |S|²`` for the kernel."""
    needs = ctx.needs_input_grad
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = ctx.output * value_factor
    if needs[1]:
        grad_weights = stencil.combine_weight_gradients(
            weight_coefficients, ctx.weight_grads
        )
    if needs[3]:
        power = _overlap(ctx.spectrum, ctx.spectrum)
        grad_kernel = _kernel_gradient(ctx, power.mul_(_per_channel(c, power)))
    return None, grad_weights, grad_values, grad_kernel, None


def _per_channel(factors: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return factors.reshape([-1] + [1] * (like.dim() - 1))


def _kernel_gradient(ctx, overlap: torch.Tensor) -> torch.Tensor:
    """``w(k) · overlap`` summed to the kernel's shape (see ``_core.fft``); scales
    ``overlap`` (a fresh tensor) in place."""
    kernel = ctx.saved_tensors[3]
    weight = _multiplicity(
        ctx.shape[-1], overlap.shape[-1], overlap.dtype, overlap.device
    )
    return overlap.mul_(weight).sum_to_size(kernel.shape)


def _convolution(nodes, weights, values, kernel, shape: List[int]) -> torch.Tensor:
    return _Convolution.apply(nodes, weights, values, kernel, shape)


def convolve(
    plan: MeshPlan, values: torch.Tensor, kernel: torch.Tensor
) -> torch.Tensor:
    """Spread, filter and gather in one step: ``gather(filter(spread(values)))``.

    ``φ_i = Σ_t W_it · IFFT[G · FFT[Σ_j q_j W_j]]_t`` with unnormalised transforms
    (``fft_norm="backward"``, ``ifft_norm="forward"``), per channel.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan`.
        values: ``(N, C)`` per-atom values (e.g. charges), in the atoms' order.
        kernel: real filter, even in ``k``, broadcastable to ``(C, n0, n1, n2//2+1)``
            (or ``(C, M, n0, n1, n2//2+1)`` for a stack of ``M`` meshes).

    Returns:
        ``(N, C)`` filtered values at the atoms, in the atoms' order.
    """
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    result = _sorted_convolution(
        plan.stencil, weights, sorted_values, kernel, mesh_shape(plan)
    )
    return torch.zeros_like(result).index_copy(0, plan.order, result)


def convolve_energy(
    plan: MeshPlan, values: torch.Tensor, kernel: torch.Tensor
) -> torch.Tensor:
    """``Σ_ic values_ic · convolve(values)_ic``, a 0-dim tensor.

    Equal to ``(values * convolve(...)).sum()``, but its backward pass reuses the
    forward pass whatever the device (:func:`convolve` can do so only where it
    may read the upstream gradient: on the CPU, in eager mode).

    Args: as :func:`convolve`, for a single mesh.
    """
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    shape = mesh_shape(plan)
    if torch.jit.is_scripting() or kernel.is_complex():
        filtered = _sorted_convolution(
            plan.stencil, weights, sorted_values, kernel, shape
        )
        return torch.sum(sorted_values * filtered)
    return _energy(plan.stencil, weights, sorted_values, kernel.to(values.dtype), shape)


@torch.jit.unused
def _energy(nodes, weights, values, kernel, shape: List[int]) -> torch.Tensor:
    return _ConvolutionEnergy.apply(nodes, weights, values, kernel, shape)


def _sorted_convolution(
    nodes: torch.Tensor,
    weights: torch.Tensor,
    sorted_values: torch.Tensor,
    kernel: torch.Tensor,
    shape: List[int],
) -> torch.Tensor:
    """:func:`convolve` of values already in the plan's order, in that order."""
    if torch.jit.is_scripting() or kernel.is_complex():
        mesh = stencil.scatter(nodes, weights, sorted_values, _numel(shape))
        filtered = filter_mesh(
            mesh.reshape([-1] + shape), kernel, "backward", "forward"
        )
        picked = stencil.pick(filtered.reshape(mesh.shape), nodes)
        return stencil.contract(picked, weights).t()
    return _convolution(
        nodes, weights, sorted_values, kernel.to(sorted_values.dtype), shape
    )


@torch.jit.unused
def convolve_stacks(
    plan: MeshPlan,
    values: torch.Tensor,
    kernel: torch.Tensor,
    meshes: List[int],
    atoms: List[int],
) -> torch.Tensor:
    """:func:`convolve` of a plan of ``B`` meshes, transformed a few meshes at a time.

    One plan for all the meshes (made with ``mesh_index``) sorts the atoms by mesh
    first, so the atoms of consecutive meshes are consecutive rows of the sorted
    plan: each stack is a slice of it, its nodes shifted to the stack's own first
    mesh. Splits (not slices) keep the backward to one concatenation per input.

    Args:
        plan: from :func:`torchpme._core.mesh.interpolation_plan` with
            ``mesh_index``.
        values: ``(N, C)`` per-atom values, in the atoms' order.
        kernel: ``(B, n0, n1, n2//2+1)`` real filters, one per mesh.
        meshes: meshes per stack (summing to ``B``).
        atoms: atoms per stack (summing to ``N``), in the order of the meshes.

    Returns:
        ``(N, C)`` filtered values at the atoms, in the atoms' order.
    """
    ns = plan.shape
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    mesh_size = _numel(ns)
    # the flat index of a node is the sum of its three per-axis shares: a stack's
    # first mesh moves to 0 by shifting the first axis's share
    axis = torch.zeros((3, 1), dtype=plan.stencil.dtype, device=plan.stencil.device)
    axis[0] = 1
    results: List[torch.Tensor] = []
    first = 0
    for nodes, part_weights, part_values, part_kernel, count in zip(
        torch.split(plan.stencil, atoms),
        torch.split(weights, atoms),
        torch.split(sorted_values, atoms),
        torch.split(kernel, meshes, dim=-4),
        meshes,
    ):
        if first > 0:
            nodes = nodes - axis * (first * mesh_size)
        results.append(
            _sorted_convolution(
                nodes, part_weights, part_values, part_kernel, [count] + list(ns)
            )
        )
        first += count
    result = torch.cat(results)
    return torch.zeros_like(result).index_copy(0, plan.order, result)
