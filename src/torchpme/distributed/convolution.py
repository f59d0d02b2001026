"""The distributed mesh chain as two autograd Functions with written adjoints.

With ``A`` the map from this rank's buffer to its band of the spectrum (halo sum,
in-plane transforms, transpose, transform along the first axis;
:func:`~torchpme.distributed.slabs.band_of`) and ``G`` the real, even filter:

* :class:`_SlabEnergy`: ``e = Σ_band w(k) G(k) |A m|²`` (``w`` the half
  spectrum's multiplicities); ``∂e/∂m = 2 A*(w G A m)`` and ``A*(w · x) =``
  :func:`~torchpme.distributed.slabs.buffer_of` ``(x)`` (fetch of the inverse
  chain: the adjoint of a real-to-half transform is the half-to-real inverse of
  ``x / w``), so the gradient is twice the potential on the buffer, one inverse
  chain; ``∂e/∂G = w |A m|²``.
* :class:`_SlabConvolution`: ``φ = A*(w G A m)``, a symmetric map, so its
  backward is the same chain applied to the upstream gradient; ``∂⟨g, φ⟩/∂G =
  w Re[A m · conj(A g)]``.

Both save their input only, and with gradients on in their backward (second
derivatives) replay the chain as differentiable operations, whose exchanges run
their own adjoints: every derivative order runs the same collectives on every
rank. Autograd of the composed chain gives the same numbers but runs the
backward of each FFT and copy separately (about twice the time).
"""

from typing import Tuple

import torch

from .._core.fft import multiplicity, overlap
from . import slabs


def _weight(band: torch.Tensor, n2: int) -> torch.Tensor:
    return multiplicity(n2, band.shape[-1], band.real.dtype, band.device)


def _kernel_gradient(band, other, kernel, n2):
    return (overlap(band, other) * _weight(band, n2)).sum_to_size(kernel.shape)


def _power(band: torch.Tensor) -> torch.Tensor:
    real = torch.view_as_real(band)
    return real.square().sum(-1)


class _SlabEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buffer, kernel, steps: Tuple):
        layout, halo, group = steps
        ctx.steps = steps
        band = slabs.band_of(buffer, layout, halo, group)
        # the band (1/P of the spectrum) is kept for a first derivative; a
        # second one replays it from the buffer as differentiable operations
        ctx.save_for_backward(buffer, kernel, band)
        weight = _weight(band, layout.shape[2])
        return torch.sum(_power(band) * (kernel * weight))

    @staticmethod
    def backward(ctx, grad):
        buffer, kernel, band = ctx.saved_tensors
        layout, halo, group = ctx.steps
        if torch.is_grad_enabled():
            band = slabs.band_of(buffer, layout, halo, group)
        potential = slabs.buffer_of(band * kernel, layout, halo, group)
        grad_buffer = (2.0 * grad) * potential
        grad_kernel = None
        if ctx.needs_input_grad[1]:
            power = _power(band) * _weight(band, layout.shape[2])
            grad_kernel = (grad * power).sum_to_size(kernel.shape)
        return grad_buffer, grad_kernel, None


class _SlabConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buffer, kernel, steps: Tuple):
        layout, halo, group = steps
        ctx.steps = steps
        ctx.save_for_backward(buffer, kernel)
        band = slabs.band_of(buffer, layout, halo, group)
        return slabs.buffer_of(band * kernel, layout, halo, group)

    @staticmethod
    def backward(ctx, grad):
        buffer, kernel = ctx.saved_tensors
        layout, halo, group = ctx.steps
        if torch.is_grad_enabled():
            # a second derivative: the same symmetric map, written with this
            # Function so that it is differentiable again
            grad_buffer = _SlabConvolution.apply(grad, kernel, ctx.steps)
        else:
            grad_band = slabs.band_of(grad.contiguous(), layout, halo, group)
            grad_buffer = slabs.buffer_of(grad_band * kernel, layout, halo, group)
        grad_kernel = None
        if ctx.needs_input_grad[1]:
            band = slabs.band_of(buffer, layout, halo, group)
            other = slabs.band_of(grad.contiguous(), layout, halo, group)
            grad_kernel = _kernel_gradient(band, other, kernel, layout.shape[2])
        return grad_buffer, grad_kernel, None


def slab_energy(buffer, kernel, layout, halo, group) -> torch.Tensor:
    """``Σ_band w G |A m|²`` of this rank (sum over ranks: ``Σ_i q_i φ_i`` of the
    unnormalised convolution); ``buffer`` ``(C, planes, n1, n2)``."""
    return _SlabEnergy.apply(buffer, kernel, (layout, halo, group))


def slab_convolution(buffer, kernel, layout, halo, group) -> torch.Tensor:
    """``(C, planes, n1, n2)``: the filtered mesh on this rank's buffer."""
    return _SlabConvolution.apply(buffer, kernel, (layout, halo, group))
