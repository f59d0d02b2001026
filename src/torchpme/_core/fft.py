"""Convolution of a real mesh with a reciprocal-space kernel, with its own backward.

``φ = s · IFFT[ G(k) · FFT[ρ] ]`` with real-to-complex transforms over the last three
axes, where the scale ``s`` follows from the two normalisations. For a real kernel
that is even in ``k`` (every kernel that is a function of ``|k|²`` is), this linear
map is symmetric, so its adjoint is itself: the gradient with respect to ``ρ`` is the
same convolution of the incoming gradient, two real FFTs (plain autograd would run
the backward of ``rfftn`` as a full complex FFT). The gradient with respect to the
kernel on the half spectrum is ``s · w(k) · Re[ρ̂(k) · conj(ĝ(k))]``, where ``w = 2``
counts the omitted ``−k`` partners (``w = 1`` on the planes ``k_z = 0`` and, for even
``n_z``, the Nyquist plane).
"""

from typing import List, Tuple

import torch

from .execution import host_fft_for

__all__ = ["differentiable_filter", "filter_mesh", "irfft3", "rfft3"]


def rfft3(mesh: torch.Tensor) -> torch.Tensor:
    """``rfftn`` over the last three axes, outside autograd (inside Functions)."""
    host = host_fft_for(mesh, (mesh.shape[-3], mesh.shape[-2], mesh.shape[-1]))
    if host is not None:
        array = host.rfftn(
            mesh.detach().numpy(), axes=(-3, -2, -1), workers=torch.get_num_threads()
        )
        return torch.from_numpy(array)
    return torch.fft.rfftn(mesh, dim=(-3, -2, -1))


def irfft3(spectrum: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
    """``irfftn(norm="forward")`` (no ``1/M``) over the last three axes, outside
    autograd; may overwrite ``spectrum`` (callers pass one they discard)."""
    host = host_fft_for(spectrum, sizes)
    if host is not None:
        # two passes, the complex one in place: on large meshes faster than
        # scipy's three-axis irfftn (benchmarks/kernels.py shows the share)
        rows = host.ifftn(
            spectrum.detach().numpy(),
            axes=(-3, -2),
            norm="forward",
            workers=torch.get_num_threads(),
            overwrite_x=True,
        )
        array = host.irfft(
            rows, n=sizes[2], axis=-1, norm="forward", workers=torch.get_num_threads()
        )
        return torch.from_numpy(array)
    return torch.fft.irfftn(spectrum, s=sizes, dim=(-3, -2, -1), norm="forward")


def _scale(fft_norm: str, ifft_norm: str, size: int) -> float:
    """Overall factor of rfftn(norm=fft_norm) then irfftn(norm=ifft_norm) relative
    to unnormalised transforms both ways."""
    forward = {"backward": 1.0, "ortho": size**-0.5, "forward": 1.0 / size}
    inverse = {"backward": 1.0 / size, "ortho": size**-0.5, "forward": 1.0}
    return forward[fft_norm] * inverse[ifft_norm]


def _multiplicity(n_last: int, half: int, dtype: torch.dtype, device: torch.device):
    # fill_ with a Python number, not item assignment: no tensor made on the host
    weight = torch.full((half,), 2.0, dtype=dtype, device=device)
    weight[:1].fill_(1.0)
    if n_last % 2 == 0:
        weight[half - 1 :].fill_(1.0)
    return weight


def _apply_kernel(spectrum: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``spectrum · kernel`` for a real kernel, as a real multiply of the (re, im)
    pairs: avoids promoting the kernel to a complex tensor."""
    return torch.view_as_complex(torch.view_as_real(spectrum) * kernel.unsqueeze(-1))


def _overlap(spectrum: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``Re[spectrum · conj(other)] = re·re' + im·im'``, a fresh real tensor.

    On the real views: a complex product with a ``conj`` view makes two complex
    temporaries of the spectrum's size."""
    a, b = torch.view_as_real(spectrum), torch.view_as_real(other)
    return (a[..., 0] * b[..., 0]).addcmul_(a[..., 1], b[..., 1])


class _Transform(torch.autograd.Function):
    """``rfftn`` over the last three axes whose adjoint is the half-spectrum
    inverse ``irfftn(g / w, norm="forward")`` (one complex-to-real transform; the
    backward of ``torch.fft.rfftn`` runs a full complex one). ``irfftn`` of a half
    spectrum ``h`` is ``Re Σ_k w_k h_k e^{ik·r}`` (``w`` of :func:`_multiplicity`),
    and the adjoint of ``rfftn`` is ``Re Σ_k g_k e^{ik·r}``."""

    @staticmethod
    def forward(ctx, mesh):
        ctx.sizes = (mesh.shape[-3], mesh.shape[-2], mesh.shape[-1])
        return torch.fft.rfftn(mesh, dim=(-3, -2, -1))

    @staticmethod
    def backward(ctx, grad):
        return _TransformAdjoint.apply(grad, ctx.sizes)


class _TransformAdjoint(torch.autograd.Function):
    """``irfftn(g / w, norm="forward")``: the adjoint of :class:`_Transform`, whose
    own adjoint is that transform again."""

    @staticmethod
    def forward(ctx, spectrum, sizes: Tuple[int, int, int]):
        weight = _multiplicity(
            sizes[2], spectrum.shape[-1], spectrum.real.dtype, spectrum.device
        )
        halved = torch.view_as_complex(
            torch.view_as_real(spectrum) / weight.unsqueeze(-1)
        )
        return torch.fft.irfftn(halved, s=sizes, dim=(-3, -2, -1), norm="forward")

    @staticmethod
    def backward(ctx, grad):
        return _Transform.apply(grad), None


def _differentiable_rfft3(mesh: torch.Tensor) -> torch.Tensor:
    """``rfftn`` over the last three axes, differentiable to any order with one
    real transform per backward pass."""
    return _Transform.apply(mesh)


def differentiable_filter(
    mesh: torch.Tensor, kernel: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(rfftn(mesh), irfftn(kernel · rfftn(mesh), norm="forward"))`` over the last
    three axes, differentiable to any order in both arguments with one real
    transform per transform in every backward pass (for graphs of second
    derivatives that need the spectrum as well, e.g. a kernel gradient)."""
    sizes = (mesh.shape[-3], mesh.shape[-2], mesh.shape[-1])
    spectrum = _differentiable_rfft3(mesh)
    # irfftn(h) = adjoint(h · w): the adjoint divides by the multiplicity w
    weight = _multiplicity(sizes[2], spectrum.shape[-1], mesh.dtype, mesh.device)
    product = _apply_kernel(spectrum, kernel * weight)
    return spectrum, _TransformAdjoint.apply(product, sizes)


class _Filter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mesh, kernel, scale: float):
        sizes = (mesh.shape[-3], mesh.shape[-2], mesh.shape[-1])
        spectrum = rfft3(mesh)
        result = irfft3(_apply_kernel(spectrum, kernel), sizes)
        output = result if scale == 1.0 else result * scale
        ctx.save_for_backward(mesh, kernel)
        # the spectrum serves the kernel gradient of a first-order backward
        ctx.spectrum = spectrum if kernel.requires_grad else None
        ctx.scale = scale
        return output

    @staticmethod
    def backward(ctx, grad):
        mesh, kernel = ctx.saved_tensors
        grad_mesh = grad_kernel = None
        double_backward = torch.is_grad_enabled()
        if double_backward:
            grad_spectrum = _differentiable_rfft3(grad)
        else:
            grad_spectrum = torch.fft.rfftn(grad, dim=(-3, -2, -1))
        if ctx.needs_input_grad[0]:
            if double_backward:
                # through the Function again, so that this gradient is differentiable
                grad_mesh = _Filter.apply(grad, kernel, ctx.scale)
            else:
                sizes = (grad.shape[-3], grad.shape[-2], grad.shape[-1])
                grad_mesh = torch.fft.irfftn(
                    _apply_kernel(grad_spectrum, kernel),
                    s=sizes,
                    dim=(-3, -2, -1),
                    norm="forward",
                )
                if ctx.scale != 1.0:
                    grad_mesh = grad_mesh * ctx.scale
        if ctx.needs_input_grad[1]:
            spectrum = ctx.spectrum
            if double_backward:
                # recomputed so that autograd sees its dependence on the mesh
                spectrum = _differentiable_rfft3(mesh)
            elif spectrum is None:
                spectrum = torch.fft.rfftn(mesh, dim=(-3, -2, -1))
            weight = _multiplicity(
                grad.shape[-1], grad_spectrum.shape[-1], grad.dtype, grad.device
            )
            overlap = _overlap(spectrum, grad_spectrum)
            grad_kernel = overlap.mul_(ctx.scale * weight).sum_to_size(kernel.shape)
        return grad_mesh, grad_kernel, None


def _plain(
    mesh: torch.Tensor,
    kernel: torch.Tensor,
    fft_norm: str,
    ifft_norm: str,
    sizes: List[int],
) -> torch.Tensor:
    transformed = torch.fft.rfftn(mesh, norm=fft_norm, dim=(-3, -2, -1))
    return torch.fft.irfftn(
        transformed * kernel, norm=ifft_norm, dim=(-3, -2, -1), s=sizes
    )


def filter_mesh(
    mesh: torch.Tensor, kernel: torch.Tensor, fft_norm: str, ifft_norm: str
) -> torch.Tensor:
    """Convolve a real mesh with a kernel given in reciprocal space.

    ``irfftn(rfftn(mesh, norm=fft_norm) · kernel, norm=ifft_norm)`` over the last three
    axes. The kernel must be real and even in ``k`` (a function of ``|k|²``), which
    makes the map self-adjoint; the backward pass relies on it.

    Args:
        mesh: ``(..., n0, n1, n2)`` real values, e.g. ``(C, n0, n1, n2)``.
        kernel: real filter broadcastable to ``(..., n0, n1, n2//2+1)``.
        fft_norm, ifft_norm: ``"ortho"``, ``"forward"`` or ``"backward"``.

    Returns:
        the filtered mesh, shape of ``mesh``.
    """
    sizes: List[int] = [mesh.shape[-3], mesh.shape[-2], mesh.shape[-1]]
    if torch.jit.is_scripting():
        return _plain(mesh, kernel, fft_norm, ifft_norm, sizes)
    if kernel.is_complex():
        return _plain(mesh, kernel, fft_norm, ifft_norm, sizes)
    scale = _scale(fft_norm, ifft_norm, sizes[0] * sizes[1] * sizes[2])
    return _Filter.apply(mesh, kernel.to(mesh.dtype), scale)
