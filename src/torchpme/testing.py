"""Helpers to test code built on torchpme: invariances, adjointness, gradients.

Physical results must not depend on how a system is written down: translating it,
renumbering its atoms, moving an atom by a lattice vector, rotating the whole
system (cell included) or describing it with a supercell leaves the per-atom
potentials unchanged (forces rotate with the system; a supercell's energy is the
sum of its copies). The checks below compare a computation with itself under
such transformations, so they need no reference values; they raise
``AssertionError`` with the largest deviation when a property fails.

Most checks take a *system function* ``fn(charges, cell, positions) -> Tensor``
that returns one row per atom, shape ``(N, ...)`` (e.g. a calculator's per-atom
potentials ``(N, C)``, with the neighbour list computed inside ``fn``). The energy
of a system function is ``E = Σ charges · fn(charges, cell, positions)``.

Tolerances default to :data:`TOLERANCES`, by the dtype of ``positions``; the
float32 entries allow for the rounding of sums of a few thousand terms.

Example:
    >>> import torch
    >>> from torchpme import Calculator, CoulombPotential
    >>> calculator = Calculator(CoulombPotential())
    >>> pairs = torch.tensor([[0, 1]])
    >>> def fn(charges, cell, positions):
    ...     distances = torch.linalg.norm(positions[1] - positions[0]).reshape(1)
    ...     return calculator(charges, cell, positions, pairs, distances)
    >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    >>> positions = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    >>> cell = torch.eye(3, dtype=torch.float64)
    >>> check_rotation_invariance(fn, charges, cell, positions, random_rotation())
"""

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

__all__ = [
    "TOLERANCES",
    "assert_close",
    "check_channel_superposition",
    "check_charge_scaling",
    "check_lattice_shift_invariance",
    "check_permutation_equivariance",
    "check_rotation_invariance",
    "check_spread_gather_adjoint",
    "check_supercell_extensivity",
    "check_translation_invariance",
    "directional_derivative",
    "energy",
    "forces",
    "gradcheck",
    "gradgradcheck",
    "random_rotation",
    "strain_derivative",
    "supercell",
    "tolerance",
]

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


def _tolerances(
    reference: torch.Tensor, atol: Optional[float], rtol: Optional[float]
) -> Dict[str, float]:
    default = tolerance(reference.dtype)
    return {
        "atol": default["atol"] if atol is None else atol,
        "rtol": default["rtol"] if rtol is None else rtol,
    }


def _check_unchanged(
    fn: SystemFunction,
    system: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    transformed: Callable[[], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    what: str,
    atol: Optional[float],
    rtol: Optional[float],
    renumbering: Optional[torch.Tensor] = None,
) -> None:
    """``fn(*transformed())`` equals ``fn(*system)`` (its rows in the order
    ``renumbering``, if given). The transformed system is built inside
    ``no_grad`` like both evaluations; tolerances follow the positions' dtype."""
    with torch.no_grad():
        before = fn(*system)
        after = fn(*transformed())
    expected = before if renumbering is None else before[renumbering]
    assert_close(after, expected, what=what, **_tolerances(system[2], atol, rtol))


def check_translation_invariance(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    translation: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """``fn`` is unchanged when every atom moves by the same ``translation``.

    Args:
        fn: system function.
        charges, cell, positions: the system.
        translation: ``(3,)`` Cartesian displacement.
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    _check_unchanged(
        fn,
        (charges, cell, positions),
        lambda: (charges, cell, positions + translation),
        "result after a translation",
        atol,
        rtol,
    )


def check_permutation_equivariance(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    permutation: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Renumbering the atoms renumbers the result: ``fn(P x) = P fn(x)``.

    Args:
        fn: system function.
        charges, cell, positions: the system.
        permutation: ``(N,)`` int64, a permutation of ``0 … N−1``.
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    _check_unchanged(
        fn,
        (charges, cell, positions),
        lambda: (charges[permutation], cell, positions[permutation]),
        "result of permuted atoms",
        atol,
        rtol,
        renumbering=permutation,
    )


def check_lattice_shift_invariance(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    shifts: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Moving atom ``i`` by the lattice vector ``shifts[i] @ cell`` changes nothing.

    Args:
        fn: system function (its neighbour list must allow unwrapped positions).
        charges, cell, positions: the system.
        shifts: ``(N, 3)`` integers (any dtype), one lattice translation per atom.
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    _check_unchanged(
        fn,
        (charges, cell, positions),
        lambda: (charges, cell, positions + shifts.to(positions.dtype) @ cell),
        "result after lattice shifts",
        atol,
        rtol,
    )


def check_rotation_invariance(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    rotation: torch.Tensor,
    check_forces: bool = True,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Rotating positions and cell together leaves ``fn`` unchanged; forces rotate.

    With ``r' = r Rᵀ`` and ``A' = A Rᵀ``: ``fn(r', A') = fn(r, A)`` and (if
    ``check_forces``) ``F(r', A') = F(r, A) Rᵀ``, forces from :func:`forces`.

    Args:
        fn: system function of scalar per-atom results (e.g. potentials).
        charges, cell, positions: the system.
        rotation: ``(3, 3)`` orthogonal matrix (proper or improper).
        check_forces: also compare the forces.
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    rotation = rotation.to(positions.dtype)
    tol = _tolerances(positions, atol, rtol)
    with torch.no_grad():
        before = fn(charges, cell, positions)
        after = fn(charges, cell @ rotation.T, positions @ rotation.T)
    assert_close(after, before, what="result after a rotation", **tol)
    if check_forces:
        expected = forces(fn, charges, cell, positions) @ rotation.T
        rotated = forces(fn, charges, cell @ rotation.T, positions @ rotation.T)
        assert_close(rotated, expected, what="forces after a rotation", **tol)


def check_supercell_extensivity(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    repeats: Sequence[int] = (2, 1, 1),
    supercell_fn: Optional[SystemFunction] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Every copy in a supercell has the per-atom results of the original cell.

    Hence the energy of the supercell is ``n`` times the original one, ``n`` the
    number of copies; both statements are checked.

    Args:
        fn: system function.
        charges, cell, positions: the system.
        repeats: copies along each lattice vector (see :func:`supercell`).
        supercell_fn: system function for the supercell, if it must differ from
            ``fn`` (e.g. a mesh calculator with a mesh scaled like the cell).
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    big = supercell(charges, cell, positions, repeats)
    copies = big[0].shape[0] // max(1, charges.shape[0])
    tol = _tolerances(positions, atol, rtol)
    with torch.no_grad():
        small_result = fn(charges, cell, positions)
        big_result = (fn if supercell_fn is None else supercell_fn)(*big)
        expected = small_result.repeat(copies, *([1] * (small_result.dim() - 1)))
        assert_close(
            big_result, expected, what="per-atom results in a supercell", **tol
        )
        small_energy = torch.sum(charges * small_result)
        big_energy = torch.sum(big[0] * big_result)
    assert_close(
        big_energy,
        copies * small_energy,
        atol=tol["atol"] * copies * max(1, charges.shape[0]),
        rtol=tol["rtol"],
        what="supercell energy / number of copies",
    )


def check_charge_scaling(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    factor: float,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Potentials are linear in the charges, so the energy is quadratic.

    ``fn(c·q) = c·fn(q)`` and ``E(c·q) = c²·E(q)``.

    Args:
        fn: system function of ``(N, C)`` potentials.
        charges, cell, positions: the system.
        factor: ``c`` (any real number).
        atol, rtol: tolerances (default: :func:`tolerance`, scaled by ``|c|`` and
            ``c²``).
    """
    tol = _tolerances(positions, atol, rtol)
    scale = max(1.0, abs(factor))
    with torch.no_grad():
        base = fn(charges, cell, positions)
        scaled = fn(factor * charges, cell, positions)
    assert_close(
        scaled,
        factor * base,
        atol=tol["atol"] * scale,
        rtol=tol["rtol"],
        what="potentials of scaled charges",
    )
    assert_close(
        torch.sum(factor * charges * scaled),
        factor**2 * torch.sum(charges * base),
        atol=tol["atol"] * scale**2 * charges.numel(),
        rtol=tol["rtol"],
        what="energy of scaled charges",
    )


def check_channel_superposition(
    fn: SystemFunction,
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """Channels are independent and potentials superpose.

    Computing all ``C`` channels at once equals computing each alone, and the
    potential of the summed charges is the sum of the channels' potentials.

    Args:
        fn: system function of ``(N, C)`` potentials.
        charges: ``(N, C)`` with ``C ≥ 1``.
        cell, positions: the system.
        atol, rtol: tolerances (default: :func:`tolerance` of the positions dtype).
    """
    tol = _tolerances(positions, atol, rtol)
    with torch.no_grad():
        together = fn(charges, cell, positions)
        alone = torch.cat(
            [
                fn(charges[:, c : c + 1], cell, positions)
                for c in range(charges.shape[1])
            ],
            dim=1,
        )
        summed = fn(charges.sum(dim=1, keepdim=True), cell, positions)
    assert_close(together, alone, what="channels computed together vs alone", **tol)
    assert_close(
        summed,
        together.sum(dim=1, keepdim=True),
        atol=tol["atol"] * charges.shape[1],
        rtol=tol["rtol"],
        what="potential of summed charges vs sum of potentials",
    )


def check_spread_gather_adjoint(
    spread: Callable[[torch.Tensor], torch.Tensor],
    gather: Callable[[torch.Tensor], torch.Tensor],
    values: torch.Tensor,
    mesh: torch.Tensor,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
) -> None:
    """``spread`` (points → mesh) and ``gather`` (mesh → points) are adjoint.

    ``⟨spread(q), m⟩ = ⟨q, gather(m)⟩`` for the given per-atom ``values`` ``q``
    and ``mesh`` ``m``.

    Args:
        spread: ``(N, C)`` → ``(C, n0, n1, n2)``.
        gather: ``(C, n0, n1, n2)`` → ``(N, C)``.
        values: ``(N, C)``.
        mesh: ``(C, n0, n1, n2)``.
        atol, rtol: tolerances (default: :func:`tolerance`, ``atol`` scaled by the
            number of terms).
    """
    tol = _tolerances(values, atol, rtol)
    with torch.no_grad():
        left = torch.sum(spread(values) * mesh)
        right = torch.sum(values * gather(mesh))
    terms = max(1, values.numel()) ** 0.5
    assert_close(
        left,
        right,
        atol=tol["atol"] * terms,
        rtol=tol["rtol"],
        what="<spread(q), m> vs <q, gather(m)>",
    )


def _double_inputs(inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
    prepared = []
    for index, tensor in enumerate(inputs):
        if tensor.is_floating_point() and tensor.dtype != torch.float64:
            raise TypeError(
                f"`inputs[{index}]` must be float64 for a finite-difference check, "
                f"got {tensor.dtype}"
            )
        if tensor.is_floating_point():
            tensor = tensor.detach().clone().requires_grad_(True)
        prepared.append(tensor)
    return tuple(prepared)


def gradcheck(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-6,
) -> bool:
    """:func:`torch.autograd.gradcheck` on float64 copies of ``inputs``.

    Every floating input gets a fresh leaf that requires a gradient; the others
    (e.g. neighbour indices) are passed as they are. Tolerances are tighter than
    PyTorch's defaults, which suit float64 computations of order one.

    Args:
        fn: function of the inputs returning a tensor (or tuple of tensors).
        inputs: tensors; floating ones must be float64.
        eps: finite-difference step.
        atol, rtol: tolerances of the Jacobian comparison.

    Returns:
        ``True``; raises ``GradcheckError`` on a mismatch.
    """
    return torch.autograd.gradcheck(
        fn, _double_inputs(inputs), eps=eps, atol=atol, rtol=rtol
    )


def gradgradcheck(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> bool:
    """:func:`torch.autograd.gradgradcheck` (second derivatives) like
    :func:`gradcheck`.

    Args:
        fn: function of the inputs returning a tensor.
        inputs: tensors; floating ones must be float64.
        eps: finite-difference step.
        atol, rtol: tolerances of the comparison.

    Returns:
        ``True``; raises ``GradcheckError`` on a mismatch.
    """
    return torch.autograd.gradgradcheck(
        fn, _double_inputs(inputs), eps=eps, atol=atol, rtol=rtol
    )
