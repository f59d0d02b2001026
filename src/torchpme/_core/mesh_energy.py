"""The mesh energy ``E = Σ_i q_i φ_i`` of a convolution, with a backward pass that
reuses its forward pass.

For ``φ = Wᵀ A W q`` (:func:`torchpme._core.mesh.convolve`) the upstream
gradient of the potentials inside ``E`` is ``(∂L/∂E) · q`` by construction, and
``Wᵀ A W`` is symmetric, so ``A W g`` is ``(∂L/∂E) · A W q``, already picked at
the stencils in the forward pass: the backward of :func:`convolve_energy` touches
no mesh and runs no transform, on every device and under ``torch.compile``. Per
mesh of a stack the same holds with that mesh's ``∂L/∂E_m``.

Second derivatives (forces in a loss) write the gradients as differentiable
expressions of one spread mesh and its spectrum.
"""

from typing import List, Optional

import torch

from . import stencil
from .backward import energies, per_atom_upstream
from .fft import differentiable_filter
from .mesh import MeshPlan, mesh_shape
from .permutation import permute_rows
from .pipeline import forward_state, kernel_gradient, run

__all__ = ["convolve_energy", "sorted_energy"]


class _ConvolutionEnergy(torch.autograd.Function):
    """``E = Σ_ic q_ic (Wᵀ A W q)_ic`` (0-dim; per mesh ``(M,)`` with ``owners``,
    the mesh of each sorted atom)."""

    @staticmethod
    def forward(ctx, nodes, weights, values, kernel, shape: List[int], owners):
        ctx.output, ctx.spectrum, ctx.weight_grads = forward_state(
            ("spread", "filter", "gather"), nodes, weights, kernel, values, shape, 1.0,
            kernel.requires_grad, weights.requires_grad,
        )  # fmt: skip
        ctx.save_for_backward(nodes, weights, values, kernel)
        ctx.shape = shape
        ctx.owners = owners
        n_meshes = shape[0] if len(shape) == 4 else 1
        return energies(values, ctx.output, owners, n_meshes)

    @staticmethod
    def backward(ctx, grad):
        per_atom, per_mesh = _upstream(ctx, grad)
        if torch.is_grad_enabled():  # second derivatives
            return _differentiable_energy_gradients(ctx, per_atom, per_mesh)
        return _reused_gradients(ctx, per_atom, per_mesh)


def _upstream(ctx, grad):
    """``(per_atom, per_mesh)``: ``∂L/∂E`` of each atom's mesh, ``(N, 1)``, and of
    each mesh, broadcastable against a ``(C, M, ...)`` spectrum (both ``grad``
    itself for one energy)."""
    if ctx.owners is None:
        return grad, grad
    return per_atom_upstream(grad, ctx.owners), grad.reshape(1, -1, 1, 1, 1)


def _reused_gradients(ctx, per_atom, per_mesh):
    """The gradients from the forward pass alone, with ``g`` the upstream gradient
    of each atom's (``per_atom``) and each mesh's (``per_mesh``) energy: ``2 g A W
    q`` for the values; for the weights, ``g q`` twice (the explicit ``q`` of
    ``E`` and the potentials' upstream ``g q``) against the kept gather weight
    gradients; ``g |S|²`` for the kernel."""
    values, kernel = ctx.saved_tensors[2:]
    needs = ctx.needs_input_grad
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = ctx.output * (2.0 * per_atom)
    if needs[1]:
        grad_weights = stencil.combine_weight_gradients(
            2.0 * per_atom * values, ctx.weight_grads
        )
    if needs[3]:
        grad_kernel = kernel_gradient(
            ctx.spectrum, ctx.spectrum, kernel, ctx.shape[-1], per_mesh
        )
    return None, grad_weights, grad_values, grad_kernel, None, None


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
    mesh = run(["spread"], nodes, weights, None, values, ctx.shape)
    spectrum, filtered = differentiable_filter(mesh.reshape([-1] + ctx.shape), kernel)
    picked = stencil.pick(filtered.reshape(mesh.shape), nodes)  # (C, n³, N)
    grad_weights = grad_values = grad_kernel = None
    if needs[2]:
        grad_values = (2.0 * per_atom) * stencil.contract(picked, weights).t()
    if needs[1]:
        field = torch.einsum("ic,cti->ti", (2.0 * per_atom) * values, picked)
        grad_weights = stencil.weight_gradients(field, weights)
    if needs[3]:
        grad_kernel = kernel_gradient(
            spectrum, spectrum, kernel, ctx.shape[-1], per_mesh
        )
    return None, grad_weights, grad_values, grad_kernel, None, None


@torch.jit.unused
def _energy_function(
    nodes, weights, values, kernel, shape: List[int], owners: Optional[torch.Tensor]
) -> torch.Tensor:
    return _ConvolutionEnergy.apply(nodes, weights, values, kernel, shape, owners)


def sorted_energy(
    nodes: torch.Tensor,
    weights: torch.Tensor,
    sorted_values: torch.Tensor,
    kernel: torch.Tensor,
    shape: List[int],
    owners: Optional[torch.Tensor],
) -> torch.Tensor:
    """:func:`convolve_energy` of values already in a plan's order (``owners``:
    the mesh of each sorted atom, or None for one energy)."""
    n_meshes = shape[0] if len(shape) == 4 else 1
    if torch.jit.is_scripting() or kernel.is_complex():
        filtered = run(
            ["spread", "filter", "gather"], nodes, weights, kernel, sorted_values, shape
        )
        return energies(sorted_values, filtered, owners, n_meshes)
    kernel = kernel.to(sorted_values.dtype)
    return _energy_function(nodes, weights, sorted_values, kernel, shape, owners)


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

    Args: as :func:`torchpme._core.mesh.convolve`; ``mesh_index``: ``(N,)``
    the mesh of each atom, as given to
    :func:`~torchpme._core.mesh.interpolation_plan`.
    """
    weights = plan.weights.to(values.dtype)
    sorted_values = permute_rows(values, plan.order)
    owners = None if mesh_index is None else mesh_index.index_select(0, plan.order)
    shape = mesh_shape(plan)
    return sorted_energy(plan.stencil, weights, sorted_values, kernel, shape, owners)
