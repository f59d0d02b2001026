"""``MeshInterpolator``: the compatible stateful wrapper over ``_core.mesh``."""

from typing import List, Optional

import torch

from .._core import mesh as core
from .._core.validation import (
    as_index,
    check_device,
    check_dtype,
    check_finite,
    check_invertible,
    check_shape,
    check_values,
    message,
    reads_cheaply,
)
from .._core.weights import Scheme, interpolation_scheme, moved

__all__ = ["MeshInterpolator"]

_NODES = {"Lagrange": [3, 4, 5, 6, 7], "P3M": [1, 2, 3, 4, 5]}


class MeshInterpolator(torch.nn.Module):
    """Spread per-atom values onto a periodic mesh and interpolate a mesh at atoms.

    Atom ``i`` at scaled fractional coordinates ``u = n ⊙ (r_i · cell⁻¹)`` is assigned
    to the ``n³`` surrounding nodes with separable weights ``W = w(x₀) w(x₁) w(x₂)``:
    Lagrange basis polynomials (``method="Lagrange"``, 3–7 nodes, as in smooth PME) or
    cardinal B-splines (``method="P3M"``, 1–5 nodes, Hockney & Eastwood's charge
    assignment). See :mod:`torchpme._core.weights` for the definitions.

    The stateful methods (:meth:`update`, :meth:`compute_weights`) exist for
    compatibility; they store the :class:`~torchpme._core.mesh.MeshPlan` made by
    :func:`torchpme._core.mesh.interpolation_plan`.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        ns_mesh: ``(3,)`` integer mesh size.
        interpolation_nodes: nodes per axis ``n``.
        method: ``"Lagrange"`` or ``"P3M"``.

    Example:
        >>> cell = 4.0 * torch.eye(3, dtype=torch.float64)
        >>> ns = torch.tensor([8, 8, 8])
        >>> interpolator = MeshInterpolator(cell, ns, 4, "Lagrange")
        >>> interpolator.compute_weights(torch.rand(5, 3, dtype=torch.float64))
        >>> interpolator.points_to_mesh(torch.ones(5, 1, dtype=torch.float64)).shape
        torch.Size([1, 8, 8, 8])

    Reference: Essmann et al., J. Chem. Phys. 103, 8577 (1995),
    doi:10.1063/1.470117; Hockney & Eastwood, Computer Simulation Using Particles
    (1988), doi:10.1201/9780367806934.
    """

    # the records' types, for TorchScript (a module attribute is otherwise inferred
    # as a plain tuple)
    _plan: core.MeshPlan
    scheme: Scheme

    def __init__(
        self,
        cell: torch.Tensor,
        ns_mesh: torch.Tensor,
        interpolation_nodes: int,
        method: str,
    ):
        super().__init__()
        interpolation_nodes = as_index(interpolation_nodes)
        if method not in _NODES:
            raise ValueError(
                message("method", "'Lagrange' or 'P3M'", f"'{method}'")
                + "; choose Lagrange or P3M"
            )
        if interpolation_nodes not in _NODES[method]:
            raise ValueError(
                message(
                    "interpolation_nodes",
                    f"one of {_NODES[method]} for method '{method}'",
                    f"{interpolation_nodes}",
                )
            )
        self.method: str = method
        self.interpolation_nodes: int = interpolation_nodes
        self.scheme = interpolation_scheme(method, interpolation_nodes)
        self._ns: List[int] = [1, 1, 1]
        self.update(cell, ns_mesh)
        self.interpolation_weights = torch.zeros(
            1, dtype=cell.dtype, device=cell.device
        )
        # the stencil of the compatible API, set by compute_weights
        placeholder = torch.zeros(1, device=cell.device)
        self.x_shifts = placeholder
        self.y_shifts = placeholder
        self.z_shifts = placeholder
        self.x_indices = placeholder
        self.y_indices = placeholder
        self.z_indices = placeholder
        self._plan = core.MeshPlan(
            torch.zeros(
                (0, 3, interpolation_nodes), dtype=torch.int64, device=cell.device
            ),
            torch.zeros(
                (0, 3, interpolation_nodes), dtype=cell.dtype, device=cell.device
            ),
            torch.zeros(0, dtype=torch.int64, device=cell.device),
            self._ns,
            0,
            self.scheme,
        )

    def _apply(self, fn, recurse: bool = True):
        # the scheme's table is not a buffer (a NamedTuple), so it follows
        # .to(device) here
        super()._apply(fn, recurse)
        self.scheme = moved(self.scheme, fn)
        return self

    def update(
        self,
        cell: Optional[torch.Tensor] = None,
        ns_mesh: Optional[torch.Tensor] = None,
    ) -> None:
        """Set a new cell and/or mesh size.

        Args:
            cell: ``(3, 3)`` cell, rows are lattice vectors (non-singular).
            ns_mesh: ``(3,)`` integer mesh size (each ≥ 1).
        """
        if cell is not None:
            check_shape("cell", cell, [3, 3], "(3, 3)")
            if reads_cheaply(cell):
                check_invertible("cell", cell)
            self.cell = cell
            self.inverse_cell = torch.linalg.inv_ex(cell)[0]
        if ns_mesh is not None:
            check_shape("ns_mesh", ns_mesh, [3], "(3,)")
            self.ns_mesh = ns_mesh
            # a meta tensor has shapes but no values: the sizes read before stay
            if ns_mesh.device.type != "meta":
                self._ns = [int(ns_mesh[0]), int(ns_mesh[1]), int(ns_mesh[2])]
                if min(self._ns) < 1:
                    raise ValueError(
                        message("ns_mesh", "positive mesh sizes", f"{self._ns}")
                    )
        check_device(
            "ns_mesh", self.ns_mesh, self.cell.device, "on the device of `cell`"
        )

    def get_mesh_xyz(self) -> torch.Tensor:
        """Cartesian coordinates ``(n0, n1, n2, 3)`` of the mesh nodes."""
        return core.mesh_coordinates(self.cell, self._ns)

    def compute_weights(self, positions: torch.Tensor) -> None:
        """Compute and store the interpolation plan of ``positions`` ``(N, 3)``.

        Afterwards ``interpolation_weights`` holds the 1-D weights, shape
        ``(n, N, 3)``: node index, atom, lattice axis.
        """
        check_device(
            "positions", positions, self.cell.device, "on the device of `cell`"
        )
        check_shape("positions", positions, [-1, 3], "(N, 3)")
        check_dtype("positions", positions, self.cell.dtype, "the dtype of `cell`")
        if check_values(positions):
            check_finite("positions", positions)
        plan = core.interpolation_plan(
            positions, self.inverse_cell, self._ns, self.scheme
        )
        self._plan = plan
        # the compatible view: (n, N, 3) in the atoms' own order
        unsorted = torch.zeros_like(plan.weights).index_copy(
            0, plan.order, plan.weights
        )
        self.interpolation_weights = unsorted.permute(2, 0, 1)
        self._set_stencil(plan)

    def _set_stencil(self, plan: core.MeshPlan) -> None:
        """The stencil of the compatible API: node ``t`` of the ``n³`` around atom
        ``i`` is ``(x_indices[t, i], y_indices[t, i], z_indices[t, i])``, its 1-D
        weights are those of shifts ``x_shifts[t]``, ``y_shifts[t]``, ``z_shifts[t]``
        (``z`` fastest)."""
        n = self.interpolation_nodes
        shares = torch.zeros_like(plan.stencil).index_copy(0, plan.order, plan.stencil)
        strides = [self._ns[1] * self._ns[2], self._ns[2], 1]
        steps = torch.arange(n, device=shares.device)
        self.x_shifts = steps.repeat_interleave(n * n)
        self.y_shifts = steps.repeat_interleave(n).repeat(n)
        self.z_shifts = steps.repeat(n * n)
        self.x_indices = (shares[:, 0, self.x_shifts] // strides[0]).T
        self.y_indices = (shares[:, 1, self.y_shifts] // strides[1]).T
        self.z_indices = (shares[:, 2, self.z_shifts] // strides[2]).T

    def points_to_mesh(self, particle_weights: torch.Tensor) -> torch.Tensor:
        """Spread ``(N, C)`` per-atom values onto a ``(C, n0, n1, n2)`` mesh."""
        check_device(
            "particle_weights",
            particle_weights,
            self.cell.device,
            "on the device of `cell`",
        )
        check_shape("particle_weights", particle_weights, [-1, -1], "(N, C)")
        if particle_weights.shape[0] != self._plan.weights.shape[0]:
            raise ValueError(
                message(
                    "particle_weights",
                    f"one row per atom of the last compute_weights call "
                    f"({self._plan.weights.shape[0]})",
                    f"{particle_weights.shape[0]} rows",
                )
            )
        # the mesh is in the dtype of the cell, whatever the values' dtype
        return core.spread(self._plan, particle_weights.to(self.cell.dtype))

    def mesh_to_points(self, mesh_vals: torch.Tensor) -> torch.Tensor:
        """Interpolate a ``(C, n0, n1, n2)`` mesh at the atoms: returns ``(N, C)``."""
        check_shape(
            "mesh_vals",
            mesh_vals,
            [-1, self._ns[0], self._ns[1], self._ns[2]],
            f"(C, {self._ns[0]}, {self._ns[1]}, {self._ns[2]})",
        )
        return core.gather(self._plan, mesh_vals)
