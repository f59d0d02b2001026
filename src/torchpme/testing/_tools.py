"""Tolerances, comparisons, transformations and derivatives of system functions
(see :mod:`torchpme.testing`)."""

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

SystemFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Default absolute and relative tolerances of the checks, per dtype: rounding of
#: identities that hold exactly in exact arithmetic (sums of a few thousand
#: terms of order one).
TOLERANCES: Dict[torch.dtype, Dict[str, float]] = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-9},
    torch.float32: {"atol": 2e-5, "rtol": 2e-5},
}


def tolerance(dtype: torch.dtype, scale: float = 1.0) -> Dict[str, float]:
    """Tolerances of :data:`TOLERANCES` for ``dtype``, multiplied by ``scale``.

    Args:
        dtype: ``torch.float32`` or ``torch.float64``.
        scale: factor for both tolerances (e.g. for a quantity that is a
            difference of large terms).

    Returns:
        ``{"atol": ..., "rtol": ...}``, ready for :func:`torch.testing.assert_close`.
    """
    if dtype not in TOLERANCES:
        raise ValueError(
            f"`dtype` must be one of {list(TOLERANCES)}, got {dtype} (no tolerance)"
        )
    return {key: scale * value for key, value in TOLERANCES[dtype].items()}


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    what: str = "values",
) -> None:
    """``torch.testing.assert_close`` with the tolerances of ``expected``'s dtype.

    Args:
        actual: computed tensor.
        expected: tensor it must equal.
        atol: absolute tolerance (default: :func:`tolerance` of the dtype).
        rtol: relative tolerance (default: :func:`tolerance` of the dtype).
        what: name of the compared quantity, for the error message.

    Raises:
        AssertionError: naming ``what`` and the largest deviation.
    """
    default = tolerance(expected.dtype)
    atol = default["atol"] if atol is None else atol
    rtol = default["rtol"] if rtol is None else rtol
    torch.testing.assert_close(
        actual.detach(),
        expected.detach(),
        atol=atol,
        rtol=rtol,
        msg=lambda text: f"{what}: {text}",
    )


def random_rotation(
    dtype: torch.dtype = torch.float64,
    generator: Optional[torch.Generator] = None,
    improper: bool = False,
) -> torch.Tensor:
    """A uniformly random 3x3 rotation (Haar measure), via QR of a Gaussian matrix.

    Args:
        dtype: dtype of the result.
        generator: random generator (default: torch's global one).
        improper: return a rotation times an inversion (determinant −1).

    Returns:
        ``(3, 3)`` orthogonal matrix ``R``; rotate row vectors with ``r @ R.T``.
    """
    gaussian = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q = -q
    if improper:
        q = -q
    return q.to(dtype)


def supercell(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    repeats: Sequence[int],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ``repeats[0] × repeats[1] × repeats[2]`` supercell of a periodic system.

    Copies are ordered with the last axis fastest; copy ``t`` holds atoms
    ``t·N … (t+1)·N − 1`` in the original order.

    Args:
        charges: ``(N, C)``.
        cell: ``(3, 3)``, rows are lattice vectors.
        positions: ``(N, 3)``.
        repeats: three positive integers.

    Returns:
        ``(charges, cell, positions)`` of the supercell.
    """
    counts = [int(n) for n in repeats]
    if len(counts) != 3 or min(counts) < 1:
        raise ValueError(f"`repeats` must be three integers >= 1, got {repeats}")
    grid = torch.cartesian_prod(
        *[
            torch.arange(n, dtype=positions.dtype, device=positions.device)
            for n in counts
        ]
    ).reshape(-1, 3)
    offsets = grid @ cell
    big_positions = (offsets.unsqueeze(1) + positions.unsqueeze(0)).reshape(-1, 3)
    big_charges = charges.repeat(grid.shape[0], 1)
    scale = torch.tensor(counts, dtype=cell.dtype, device=cell.device)
    return big_charges, cell * scale.unsqueeze(1), big_positions


def energy(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """``E = Σ charges · fn(charges, cell, positions)`` (a 0-dim tensor).

    Args:
        fn: system function returning ``(N, C)`` potentials.
        charges, cell, positions: the system.
    """
    return torch.sum(charges * fn(charges, cell, positions))


def forces(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """Forces ``−∂E/∂r`` of :func:`energy` by automatic differentiation, ``(N, 3)``.

    Args:
        fn: system function; it must be differentiable in ``positions``.
        charges, cell, positions: the system (not modified).
    """
    positions = positions.detach().clone().requires_grad_(True)
    value = energy(fn, charges.detach(), cell.detach(), positions)
    (gradient,) = torch.autograd.grad(value, positions)
    return -gradient


def strain_derivative(
    energy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cell: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """``∂E/∂ε`` of a homogeneous strain by automatic differentiation.

    Positions and cell are strained together, ``r → r (I + ε)``, ``A → A (I + ε)``
    (row vectors), so ``∂E/∂ε = rᵀ ∂E/∂r + Aᵀ ∂E/∂A``; the stress is this divided by
    the volume (ASE's sign convention).

    Args:
        energy_fn: ``energy_fn(cell, positions) -> E`` (0-dim).
        cell: ``(3, 3)``.
        positions: ``(N, 3)``.

    Returns:
        ``(3, 3)`` derivative (symmetric for a rotation-invariant energy).
    """
    strain = torch.zeros(3, 3, dtype=cell.dtype, device=cell.device)
    strain.requires_grad_(True)
    deformation = torch.eye(3, dtype=cell.dtype, device=cell.device) + strain
    value = energy_fn(cell.detach() @ deformation, positions.detach() @ deformation)
    (gradient,) = torch.autograd.grad(value, strain)
    return gradient


def directional_derivative(
    function: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    direction: torch.Tensor,
    step: float,
    order: int = 4,
) -> torch.Tensor:
    """Central finite difference of ``d/dt function(x + t·direction)`` at ``t = 0``.

    Order 2: ``(f(h) − f(−h)) / 2h``, error ``O(h²)``; order 4:
    ``(8 (f(h) − f(−h)) − (f(2h) − f(−2h))) / 12h``, error ``O(h⁴)``. Evaluated
    without gradients.

    Args:
        function: scalar function of one tensor.
        x: point of evaluation.
        direction: tensor of the shape of ``x``.
        step: ``h``.
        order: 2 or 4.

    Returns:
        0-dim tensor.
    """
    if order not in (2, 4):
        raise ValueError(f"`order` must be 2 or 4, got {order}")
    with torch.no_grad():

        def at(t: float) -> torch.Tensor:
            return function(x + t * direction)

        if order == 2:
            return (at(step) - at(-step)) / (2.0 * step)
        return (8.0 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (
            12.0 * step
        )
