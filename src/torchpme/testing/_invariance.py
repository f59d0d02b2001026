"""Invariance checks of system functions (see :mod:`torchpme.testing`): the
result of a computation compared with itself under a transformation."""

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from ._tools import SystemFunction, assert_close, forces, supercell, tolerance


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
