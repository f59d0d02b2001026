"""Reciprocal-space filters of mesh data (compatible API over ``_core.kspace``)."""

from typing import List, Optional

import torch

from .._core import kspace, pipeline
from .._core.validation import (
    as_index,
    check_choice,
    check_device,
    check_free_of_nan,
    check_invertible,
    check_shape,
    message,
    reads_cheaply,
)

__all__ = ["KSpaceFilter", "KSpaceKernel", "P3MKSpaceFilter"]

_NORMS = ["ortho", "forward", "backward"]


class KSpaceKernel(torch.nn.Module):
    """Interface of a TorchScript-able reciprocal-space kernel ``G(|k|²)``.

    Subclasses implement :meth:`kernel_from_k_sq`, which receives the squared norms
    of the mesh k-vectors, shape ``(n0, n1, n2//2+1)``, and returns a filter that
    broadcasts against the transformed mesh ``(C, n0, n1, n2//2+1)`` (one filter for
    all channels, or one per channel). Any potential is also a kernel.
    """

    def __init__(self):
        super().__init__()

    def kernel_from_k_sq(self, k_sq: torch.Tensor) -> torch.Tensor:
        """The filter at squared wave-vector norms ``k_sq``."""
        raise NotImplementedError(
            f"kernel_from_k_sq is not implemented for {self.__class__.__name__}"
        )


class KSpaceFilter(torch.nn.Module):
    """Convolve mesh data with a kernel defined in reciprocal space.

    ``φ = IFFT[ G(|k|²) · FFT[ρ] ]`` with real-to-complex transforms over the three
    spatial axes of a ``(C, n0, n1, n2)`` mesh. With ``fft_norm="backward"`` and
    ``ifft_norm="forward"`` no ``1/N_mesh`` factor appears anywhere:
    ``φ(x_m) = Σ_k G(k) ρ̂(k) e^{i k·x_m}`` with ``ρ̂(k) = Σ_m ρ_m e^{−i k·x_m}``.

    The filter is evaluated by :meth:`update` and kept until the next call, so the
    kernel's parameters stay differentiable through it.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        ns_mesh: ``(3,)`` integer mesh size.
        kernel: a :class:`KSpaceKernel` (or any module with ``kernel_from_k_sq``).
        fft_norm: normalisation of the forward FFT: ``"ortho"``, ``"forward"``,
            ``"backward"``.
        ifft_norm: normalisation of the inverse FFT, same choices.
    """

    def __init__(
        self,
        cell: torch.Tensor,
        ns_mesh: torch.Tensor,
        kernel: KSpaceKernel,
        fft_norm: str = "ortho",
        ifft_norm: str = "ortho",
    ):
        super().__init__()
        check_choice("fft_norm", fft_norm, _NORMS)
        check_choice("ifft_norm", ifft_norm, _NORMS)
        self._fft_norm: str = fft_norm
        self._ifft_norm: str = ifft_norm
        if not hasattr(kernel, "kernel_from_k_sq"):
            raise TypeError(
                message(
                    "kernel",
                    "a KSpaceKernel (a module with kernel_from_k_sq)",
                    f"{type(kernel).__name__}",
                )
            )
        self.kernel = kernel
        self._ns: List[int] = [1, 1, 1]
        self.cell = cell
        self.ns_mesh = ns_mesh
        self._kvectors = torch.zeros((1, 1, 1, 3), dtype=cell.dtype, device=cell.device)
        self._k_sq = torch.zeros((1, 1, 1), dtype=cell.dtype, device=cell.device)
        self._kfilter = torch.zeros((1, 1, 1), dtype=cell.dtype, device=cell.device)
        self.update(cell, ns_mesh)

    @torch.jit.export
    def update(
        self,
        cell: Optional[torch.Tensor] = None,
        ns_mesh: Optional[torch.Tensor] = None,
    ) -> None:
        """Set a new cell and/or mesh size, and re-evaluate the filter.

        Called without arguments it only re-evaluates the filter (e.g. after the
        kernel's parameters changed).
        """
        if cell is not None:
            check_shape("cell", cell, [3, 3], "(3, 3)")
            if reads_cheaply(cell):
                check_invertible("cell", cell)
            self.cell = cell
        if ns_mesh is not None:
            check_shape("ns_mesh", ns_mesh, [3], "(3,)")
            sizes = [int(ns_mesh[0]), int(ns_mesh[1]), int(ns_mesh[2])]
            if min(sizes) < 1:
                raise ValueError(message("ns_mesh", "positive mesh sizes", str(sizes)))
            self.ns_mesh = ns_mesh
            self._ns = sizes
        check_device(
            "ns_mesh", self.ns_mesh, self.cell.device, "on the device of `cell`"
        )
        if cell is not None or ns_mesh is not None:
            self._kvectors = kspace.kvectors_for_mesh(self.cell, self._ns)
            self._k_sq = torch.sum(self._kvectors * self._kvectors, dim=-1)
        self._kfilter = self.filter_values(self._k_sq, self.cell, self._ns)

    def filter_values(
        self, k_sq: torch.Tensor, cell: torch.Tensor, ns: List[int]
    ) -> torch.Tensor:
        """The filter on a mesh; reads no state but the kernel.

        Args:
            k_sq: ``(n0, n1, n2//2+1)`` squared norms of the mesh k-vectors of
                ``cell``.
            cell: ``(3, 3)`` cell.
            ns: mesh size, three ints.
        """
        return self.kernel.kernel_from_k_sq(k_sq)

    def influence(self, cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
        """The factor of the assignment scheme on the half spectrum of a mesh of
        ``cell`` (1 here; the P3M influence function in
        :class:`P3MKSpaceFilter`)."""
        return torch.ones((), dtype=cell.dtype, device=cell.device)

    def forward(self, mesh_values: torch.Tensor) -> torch.Tensor:
        """Filter a real ``(C, n0, n1, n2)`` mesh; returns the same shape."""
        check_shape(
            "mesh_values",
            mesh_values,
            [-1, self._ns[0], self._ns[1], self._ns[2]],
            f"(C, {self._ns[0]}, {self._ns[1]}, {self._ns[2]}) like the filter's mesh",
        )
        check_device(
            "mesh_values",
            mesh_values,
            self._kfilter.device,
            "on the device of the filter",
        )
        # the wider of the two dtypes, as a product of the two would have
        dtype = torch.promote_types(mesh_values.dtype, self._kfilter.dtype)
        result = pipeline.filter_mesh(
            mesh_values.to(dtype), self._kfilter, self._fft_norm, self._ifft_norm
        )
        check_free_of_nan(
            "filtered mesh_values", result, "; try a different mesh_spacing"
        )
        return result


class P3MKSpaceFilter(KSpaceFilter):
    """:class:`KSpaceFilter` whose filter is multiplied by the P3M influence function.

    The filter is ``influence(k) · G(|k|²)``; mode 0 (used by the P3M calculator) is
    ``1/U²(k)`` with ``U²`` the squared transform of the B-spline charge assignment of
    order ``interpolation_nodes``; modes 1–3 include a finite-difference operator of
    order ``2 · differential_order`` (see :func:`torchpme._core.kspace.p3m_influence`).

    Args:
        cell, ns_mesh, kernel, fft_norm, ifft_norm: as :class:`KSpaceFilter`.
        interpolation_nodes: order ``n`` of the B-spline assignment (1–5).
        mode: 0, 1, 2 or 3.
        differential_order: 1 … 6.
        cartesian_influence: use torch-pme 0.5's influence function, which
            multiplies Cartesian k components by ``‖a_d‖/n_d`` and is exact for
            orthorhombic cells only (to reproduce its numbers). By default the
            assignment transform is taken along the lattice vectors, exact for any
            cell; both agree for orthorhombic cells.

    Reference: Deserno & Holm, J. Chem. Phys. 109, 7678 (1998),
    doi:10.1063/1.477414.
    """

    def __init__(
        self,
        cell: torch.Tensor,
        ns_mesh: torch.Tensor,
        interpolation_nodes: int,
        kernel: KSpaceKernel,
        fft_norm: str = "ortho",
        ifft_norm: str = "ortho",
        mode: int = 0,
        differential_order: int = 2,
        cartesian_influence: bool = False,
    ):
        interpolation_nodes = as_index(interpolation_nodes)
        if mode not in [0, 1, 2, 3]:
            raise ValueError(message("mode", "one of [0, 1, 2, 3]", f"{mode}"))
        if differential_order not in [1, 2, 3, 4, 5, 6]:
            raise ValueError(
                message(
                    "differential_order", "an integer in 1 … 6", f"{differential_order}"
                )
            )
        if (
            isinstance(interpolation_nodes, bool)
            or not isinstance(interpolation_nodes, int)
            or interpolation_nodes < 1
        ):
            raise ValueError(
                message(
                    "interpolation_nodes", "an integer >= 1", f"{interpolation_nodes}"
                )
            )
        # set before the parent constructor, whose update() evaluates the filter
        self.interpolation_nodes: int = interpolation_nodes
        self.mode: int = mode
        self.differential_order: int = differential_order
        self.cartesian_influence: bool = cartesian_influence
        self._differences: List[float] = kspace.difference_coefficients(
            differential_order
        )
        super().__init__(cell, ns_mesh, kernel, fft_norm, ifft_norm)
        # the table of c_{o,m} (row o − 1) as a buffer, as torch-pme keeps it, so
        # that state dicts of the two load into each other
        table = [
            kspace.difference_coefficients(o) + [0.0] * (6 - o) for o in range(1, 7)
        ]
        self.register_buffer("_diff_coeff", torch.tensor(table, device=cell.device))

    def filter_values(
        self, k_sq: torch.Tensor, cell: torch.Tensor, ns: List[int]
    ) -> torch.Tensor:
        """``influence(k) · G(|k|²)`` on a mesh."""
        return self.influence(cell, ns) * self.kernel.kernel_from_k_sq(k_sq)

    def influence(self, cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
        """The influence function on the half spectrum of a mesh of ``cell``
        (see :func:`torchpme._core.kspace.p3m_influence`)."""
        return kspace.p3m_influence(
            cell,
            ns,
            self.interpolation_nodes,
            self.mode,
            self._differences,
            self.cartesian_influence,
        )
