"""Adjointness of spread and gather, and gradient checks in float64 (see
:mod:`torchpme.testing`)."""

from typing import Callable, Optional, Sequence, Tuple

import torch

from ._invariance import _tolerances
from ._tools import assert_close


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
