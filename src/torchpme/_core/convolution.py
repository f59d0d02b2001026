"""Points → mesh → filter → points as one linear map with its own backward pass.

The mesh part of PME and P3M is ``φ = Wᵀ A W q``: spread the values ``q`` with the
interpolation weights ``W``, convolve with the filter ``A`` (self-adjoint, see
:mod:`torchpme._core.fft`), gather back. Composing the three autograd Functions of
:mod:`torchpme._core.stencil` and :mod:`torchpme._core.fft` keeps every full mesh
alive for the backward pass and, for an upstream gradient ``g``, spreads ``g``,
filters it (two FFTs) and gathers it again. As one Function:

- the forward keeps only the picked stencil values of ``A W q`` (``n³`` per atom
  and channel), not the meshes;
- the backward of the potentials spreads, filters and gathers the upstream
  gradient ``g`` (two FFTs);
- :func:`convolve_energy` returns the energy ``E = Σ_i q_i φ_i`` itself: its
  upstream gradient is ``g = (∂L/∂E) · q`` by construction, and ``Wᵀ A W`` is
  symmetric, so ``A W g`` is ``(∂L/∂E) · A W q``, already picked in the forward:
  its backward touches no mesh and runs no FFT, on every device and under
  ``torch.compile``.

Batches transform a few meshes at a time from one plan
(:mod:`torchpme._core.stacks`).

Second derivatives (forces in a loss) re-run the composed differentiable Functions
inside the backward pass, like activation checkpointing.
"""

from typing import List, Optional, Tuple

import torch

from . import stencil
from .backward import energies, per_atom_upstream, replay
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

__all__ = ["convolve", "convolve_energy"]


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
        return _forward_pass(ctx, nodes, weights, values, kernel, shape)

    @staticmethod
    def backward(ctx, grad):
        nodes, weights, values, kernel = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = _convolution_from_ops(nodes, weights, values, kernel, ctx.shape)
            inputs = [None, weights, values, kernel, None]
            return replay(output, inputs, ctx.needs_input_grad, grad)
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
    """``E = Σ_ic q_ic (Wᵀ A W q)_ic`` (0-dim; per mesh ``(M,)`` with ``owners``,
    the mesh of each sorted atom): the upstream gradient of the potentials is
    ``(∂L/∂E) · q``, known without reading any value, so the backward reuses the
    forward pass on every device (no transform, no host synchronisation). The
    meshes of a stack are independent, so per mesh the same holds with that
    mesh's ``∂L/∂E_m``."""

    @staticmethod
    def forward(ctx, nodes, weights, values, kernel, shape: List[int], owners):
        ctx.output = _forward_pass(ctx, nodes, weights, values, kernel, shape)
        ctx.owners = owners
        n_meshes = shape[0] if len(shape) == 4 else 1
        return energies(values, ctx.output, owners, n_meshes)

    @staticmethod
    def backward(ctx, grad):
        per_atom, per_mesh = _upstream(ctx, grad)
        if torch.is_grad_enabled():  # second derivatives
            return _differentiable_energy_gradients(ctx, per_atom, per_mesh)
        values = ctx.saved_tensors[2]
        # the explicit q of E and the upstream g·q of the potentials: twice each
        return _reused_gradients(ctx, per_mesh, 2.0 * per_atom * values, per_atom)


def _upstream(ctx, grad):
    """``(per_atom, per_mesh)``: ``∂L/∂E`` of each atom's mesh, ``(N, 1)``, and of
    each mesh, broadcastable against a ``(C, M, ...)`` spectrum (both ``grad``
    itself for one energy)."""
    if ctx.owners is None:
        return grad, grad
    return per_atom_upstream(grad, ctx.owners), grad.reshape(1, -1, 1, 1, 1)


def _differentiable_energy_gradients(ctx, per_atom, per_mesh):
    """The gradients of ``E = ρᵀ A ρ`` (``ρ = W q``) for second derivatives (forces
    or stress in a loss), as differentiable expressions of one spectrum ``S = FFT
    ρ`` and filtered mesh ``φ = A ρ``: ``∂E/∂q = 2 Wᵀ φ``, ``∂E/∂W_it = 2 Σ_c q_ic
    φ_ct`` (``A`` is symmetric; through the separable weights at the picked stencil
    values) and ``∂E/∂G = w |S|²`` for the kernel, each times the upstream
    gradient of its mesh. Replaying the composed map instead (``ρᵀAρ``
    differentiated by autograd) transforms twice here and twice more in the next
    backward pass; this transforms once each."""
    nodes, weights, values, kernel = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mesh = stencil.spread_values(nodes, weights, values, _numel(ctx.shape))
    spectrum, filtered = differentiable_filter(mesh.reshape([-1] + ctx.shape), kernel)
    picked = stencil.pick(filtered.reshape(mesh.shape), nodes)  # (C, n³, N)
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = (2.0 * per_atom) * stencil.contract(picked, weights).t()
    if needs[1]:
        field = torch.einsum("ic,cti->ti", (2.0 * per_atom) * values, picked)
        grad_weights = stencil.weight_gradients(field, weights)
    if needs[3]:
        weight = _multiplicity(
            ctx.shape[-1], spectrum.shape[-1], spectrum.real.dtype, values.device
        )
        power = _overlap(spectrum, spectrum) * (per_mesh * weight)
        grad_kernel = power.sum_to_size(kernel.shape)
    return None, grad_weights, grad_values, grad_kernel, None, None


def _reused_gradients(ctx, per_mesh, weight_coefficients, per_atom):
    """The gradients of an energy ``Σ q · A W q`` from its forward pass alone:
    ``2 g A W q`` for the values, ``weight_coefficients`` (``2 g q``) against the
    kept weight gradients, ``g |S|²`` for the kernel, with ``g`` the upstream
    gradient of each atom's (``per_atom``) and each mesh's (``per_mesh``) energy."""
    needs = ctx.needs_input_grad
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = ctx.output * (2.0 * per_atom)
    if needs[1]:
        grad_weights = stencil.combine_weight_gradients(
            weight_coefficients, ctx.weight_grads
        )
    if needs[3]:
        power = _overlap(ctx.spectrum, ctx.spectrum)
        grad_kernel = _kernel_gradient(ctx, power.mul_(per_mesh))
    return None, grad_weights, grad_values, grad_kernel, None, None


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
    plan: MeshPlan,
    values: torch.Tensor,
    kernel: torch.Tensor,
    mesh_index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``Σ_ic values_ic · convolve(values)_ic``: a 0-dim tensor, or with
    ``mesh_index`` the ``(M,)`` energies of the plan's meshes.

    Equal to ``(values * convolve(...)).sum()``, but its backward pass reuses the
    forward pass whatever the device (the upstream gradient of the potentials is
    ``(∂L/∂E) · values`` by construction).

    Args: as :func:`convolve`; ``mesh_index``: ``(N,)`` the mesh of each atom, as
    given to :func:`~torchpme._core.mesh.interpolation_plan`.
    """
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    shape = mesh_shape(plan)
    owners = None if mesh_index is None else mesh_index.index_select(0, plan.order)
    if torch.jit.is_scripting() or kernel.is_complex():
        filtered = _sorted_convolution(
            plan.stencil, weights, sorted_values, kernel, shape
        )
        return energies(sorted_values, filtered, owners, max(plan.n_meshes, 1))
    kernel = kernel.to(values.dtype)
    return _energy(plan.stencil, weights, sorted_values, kernel, shape, owners)


@torch.jit.unused
def _energy(
    nodes, weights, values, kernel, shape: List[int], owners: Optional[torch.Tensor]
) -> torch.Tensor:
    return _ConvolutionEnergy.apply(nodes, weights, values, kernel, shape, owners)


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
