"""Real three-dimensional transforms of meshes, and the arithmetic of half spectra.

The filter stage of :mod:`torchpme._core.pipeline` is ``φ = s · IFFT[ G(k) · FFT[ρ] ]``
with real-to-complex transforms over the last three axes, where the scale ``s``
follows from the two normalisations (:func:`norm_scale`). A half spectrum omits the
``−k`` partners of real data: a sum over all ``k`` is a sum over the half with the
weights :func:`multiplicity` (``w = 2``; ``w = 1`` on the plane ``k_z = 0`` and, for
even ``n_z``, the Nyquist plane), which is why the gradient of the filter with
respect to the kernel is ``s · w(k) · Re[ρ̂(k) · conj(ĝ(k))]``.
"""

from typing import Optional, Tuple

import torch

from .execution import host_fft_for

__all__ = [
    "apply_kernel",
    "differentiable_filter",
    "differentiable_rfft3",
    "even_transform",
    "inverse_transform",
    "irfft3",
    "mirror_index",
    "mirrored_octant",
    "multiplicity",
    "norm_scale",
    "overlap",
    "rfft3",
]


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


def mirror_index(n: int, device: torch.device) -> torch.Tensor:
    """The index ``|d|`` (``d`` wrapped to ``[−n/2, n/2)``) of each node of an
    ``n``-node axis: where an even function's octant holds its value."""
    steps = torch.arange(n, device=device)
    return torch.where(steps < (n + 1) // 2, steps, n - steps)


@torch.jit.unused
def _host_cosine_transform(
    octant: torch.Tensor, sizes: Tuple[int, int, int]
) -> Optional[torch.Tensor]:
    """The type-I cosine transform of ``octant`` along each axis by scipy, or
    None where the host does not transform this mesh (or a gradient is needed,
    or a size is odd: the even extension of odd length is no type-I transform)."""
    if octant.requires_grad or sizes[0] % 2 + sizes[1] % 2 + sizes[2] % 2 != 0:
        return None
    host = host_fft_for(octant.unsqueeze(0), sizes)
    if host is None:
        return None
    array = octant.numpy()
    for axis in range(3):
        array = host.dct(array, type=1, axis=axis, workers=torch.get_num_threads())
    return torch.from_numpy(array)


def even_transform(octant: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
    """The octant ``(n0//2+1, n1//2+1, n2//2+1)`` of the transform (``rfftn``,
    real part) of a real ``sizes`` mesh that is even along each axis, from the
    octant of its displacements ``0 ≤ d ≤ n/2``.

    The transform of an even sequence is real and even, so it is formed on the
    octant: a type-I cosine transform per axis for even sizes, on the host where
    scipy transforms the mesh; else the transform of each axis mirrored in
    turn. Differentiable on the ``torch.fft`` path.
    """
    hosted: Optional[torch.Tensor] = None
    if not torch.jit.is_scripting():
        hosted = _host_cosine_transform(octant, sizes)
    if hosted is not None:
        return hosted
    half = octant
    for axis in range(3):
        full = half.index_select(axis, mirror_index(sizes[axis], octant.device))
        half = torch.fft.rfft(full, dim=axis).real
    return half


def mirrored_octant(octant: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
    """The half spectrum ``(n0, n1, n2//2+1)`` of a function even along each
    axis, from its octant (:func:`even_transform`)."""
    half = octant.index_select(0, mirror_index(sizes[0], octant.device))
    return half.index_select(1, mirror_index(sizes[1], octant.device))


def norm_scale(fft_norm: str, ifft_norm: str, size: int) -> float:
    """Overall factor of ``rfftn(norm=fft_norm)`` then ``irfftn(norm=ifft_norm)``
    relative to unnormalised transforms both ways, for a mesh of ``size`` points."""
    scale = 1.0
    if fft_norm == "ortho":
        scale = scale * size**-0.5
    elif fft_norm == "forward":
        scale = scale / size
    if ifft_norm == "ortho":
        scale = scale * size**-0.5
    elif ifft_norm == "backward":
        scale = scale / size
    return scale


def inverse_transform(
    product: torch.Tensor, sizes: Tuple[int, int, int]
) -> torch.Tensor:
    """``irfftn(norm="forward")`` (no ``1/M``) of ``(..., n0, n1, n2//2+1)`` half
    spectra as ``(B, n0, n1, n2)``; may overwrite ``product``."""
    product = product.reshape((-1,) + product.shape[-3:])
    if product.shape[0] > 1:
        # for several meshes, two steps beat the 3-D complex-to-real transform
        rows = torch.fft.ifft2(product, dim=(-3, -2), norm="forward")
        return torch.fft.irfft(rows, n=sizes[2], dim=-1, norm="forward")
    return irfft3(product, sizes)


def multiplicity(n_last: int, half: int, dtype: torch.dtype, device: torch.device):
    # fill_ with a Python number, not item assignment: no tensor made on the host
    weight = torch.full((half,), 2.0, dtype=dtype, device=device)
    weight[:1].fill_(1.0)
    if n_last % 2 == 0:
        weight[half - 1 :].fill_(1.0)
    return weight


def apply_kernel(spectrum: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``spectrum · kernel`` for a real kernel, as a real multiply of the (re, im)
    pairs: avoids promoting the kernel to a complex tensor."""
    return torch.view_as_complex(torch.view_as_real(spectrum) * kernel.unsqueeze(-1))


def overlap(spectrum: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``Re[spectrum · conj(other)] = re·re' + im·im'``, a fresh real tensor.

    On the real views: a complex product with a ``conj`` view makes two complex
    temporaries of the spectrum's size."""
    a, b = torch.view_as_real(spectrum), torch.view_as_real(other)
    return (a[..., 0] * b[..., 0]).addcmul_(a[..., 1], b[..., 1])


class _Transform(torch.autograd.Function):
    """``rfftn`` over the last three axes whose adjoint is the half-spectrum
    inverse ``irfftn(g / w, norm="forward")`` (one complex-to-real transform; the
    backward of ``torch.fft.rfftn`` runs a full complex one). ``irfftn`` of a half
    spectrum ``h`` is ``Re Σ_k w_k h_k e^{ik·r}`` (``w`` of :func:`multiplicity`),
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
        weight = multiplicity(
            sizes[2], spectrum.shape[-1], spectrum.real.dtype, spectrum.device
        )
        halved = torch.view_as_complex(
            torch.view_as_real(spectrum) / weight.unsqueeze(-1)
        )
        return torch.fft.irfftn(halved, s=sizes, dim=(-3, -2, -1), norm="forward")

    @staticmethod
    def backward(ctx, grad):
        return _Transform.apply(grad), None


def differentiable_rfft3(mesh: torch.Tensor) -> torch.Tensor:
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
    spectrum = differentiable_rfft3(mesh)
    # irfftn(h) = adjoint(h · w): the adjoint divides by the multiplicity w
    weight = multiplicity(sizes[2], spectrum.shape[-1], mesh.dtype, mesh.device)
    product = apply_kernel(spectrum, kernel * weight)
    return spectrum, _TransformAdjoint.apply(product, sizes)
