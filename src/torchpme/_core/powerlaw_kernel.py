"""The reciprocal-space shape of the ``1/r^p`` kernels, with its own backward.

``g(k², σ) = f_p(x)``, ``x = σ²k²/2``, ``f_p(x) = Γ(a, x) x^{−a}``, ``a = (3 − p)/2``
(:func:`torchpme._core.special.gammaincc_over_powerlaw`), and its limit at ``k = 0``:
``2/(p − 3)`` for ``p > 3``, 0 otherwise. The kernel of
:class:`~torchpme.potentials.InversePowerLawPotential` is ``A C_p(σ) g``. Through
plain autograd, ``f_p`` (error function or ``E₁`` and a recurrence) keeps a dozen
grid-sized results and replays them backward, which made the cell gradient (the
stress) cost more than the rest of a step. Its derivative is short:

.. math::

    f_p'(x) = −\\frac{e^{−x} + a f_p(x)}{x}, \\qquad
    \\frac{∂g}{∂k^2} = \\frac{σ^2}{2} f_p'(x), \\qquad
    \\frac{∂g}{∂σ} = \\frac{2x}{σ} f_p'(x)

(0 at ``k = 0``, where ``g`` is a constant). Second derivatives re-run the composed
operations.
"""

import torch

from .backward import replay
from .execution import traced
from .special import gammaincc_over_powerlaw

__all__ = ["powerlaw_shape"]


def powerlaw_shape(k_sq: torch.Tensor, smearing: torch.Tensor, p: int) -> torch.Tensor:
    """``f_p(σ²k²/2)``, its limit at ``k = 0`` where ``k² = 0``.

    Args:
        k_sq: squared wave-vector norms, any shape.
        smearing: ``σ``, 0-dim.
        p: the exponent, 1 … 6.

    Returns:
        the shape of ``k_sq``.
    """
    if not (k_sq.requires_grad or smearing.requires_grad):
        return _powerlaw_from_ops(k_sq, smearing, p)
    if torch.jit.is_scripting():
        return _powerlaw_from_ops(k_sq, smearing, p)
    if traced(k_sq):
        return _powerlaw_from_ops(k_sq, smearing, p)
    return _powerlaw_by_function(k_sq, smearing, p)


def _powerlaw_from_ops(
    k_sq: torch.Tensor, smearing: torch.Tensor, p: int
) -> torch.Tensor:
    """The shape in differentiable operations (the value at 0 is not evaluated)."""
    x = 0.5 * smearing**2 * k_sq
    zero = x == 0.0
    safe = torch.where(zero, torch.ones_like(x), x)
    value = gammaincc_over_powerlaw(p, safe)
    at_zero = 2.0 / (p - 3.0) if p > 3 else 0.0
    return value.masked_fill(zero, at_zero)


class _PowerLawShape(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k_sq, smearing, p: int):
        with torch.no_grad():
            value = _powerlaw_from_ops(k_sq, smearing, p)
        ctx.save_for_backward(k_sq, smearing, value)
        ctx.p = p
        return value

    @staticmethod
    def backward(ctx, grad):
        k_sq, smearing, value = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # second derivatives
            output = _powerlaw_from_ops(k_sq, smearing, ctx.p)
            return replay(output, [k_sq, smearing, None], needs, grad)
        a = (3.0 - ctx.p) / 2.0
        x = (0.5 * smearing**2) * k_sq
        zero = x == 0.0
        # grad · f'(x) = −grad (e^{−x} + a f)/x, 0 where x = 0 (g is constant there)
        slope = torch.exp(-x).add_(value, alpha=a).div_(x).mul_(grad).neg_()
        slope.masked_fill_(zero, 0.0)
        grad_k_sq = grad_smearing = None
        if needs[1]:
            grad_smearing = torch.sum(slope * x) * (2.0 / smearing)
        if needs[0]:
            grad_k_sq = slope.mul_(0.5 * smearing**2)
        return grad_k_sq, grad_smearing, None


@torch.jit.unused
def _powerlaw_by_function(
    k_sq: torch.Tensor, smearing: torch.Tensor, p: int
) -> torch.Tensor:
    return _PowerLawShape.apply(k_sq, smearing, p)
