"""Point dipoles and induced polarisation at the ASE front door.

With dipoles ``μ`` ``(N, 3)`` (e·Å) beside the charges ``q``, and optionally
isotropic polarisabilities ``α`` ``(N,)`` (Å³), the energy is

.. math::

    E = k_e \\big[ E_0(q, μ) + U(μ^{ind}) \\big], \\qquad
    U(m) = \\tfrac12 mᵀα⁻¹m − \\tfrac12 mᵀTm − m·E⁰,

``E_0 = ½ Σ_i (q_i φ_i − μ_i·E⁰_i)`` the energy of the permanent moments
(:class:`~torchpme.multipoles.MultipoleCalculator`), ``E⁰`` their field at the
atoms (not damped), ``T`` the dipole field tensor, Thole-damped with ``thole``,
and ``μ^{ind}`` the minimum of ``U`` (:func:`torchpme.polarisation.induce`):
``(α⁻¹ − T) μ^{ind} = E⁰``, ``U = −½ μ^{ind}·E⁰``. ``E_0 + U`` is evaluated
as ``E_0(q, μ + m) + ½ mᵀα⁻¹m − ½ mᵀ(T − T_bare)m`` with ``m = μ^{ind}`` held
fixed: ``U`` is stationary in ``m``, so autograd at fixed ``m`` gives the
forces ``−∂E/∂r`` and the stress ``(1/V) ∂E/∂ε`` (strained positions and cell)
of the self-consistent energy without differentiating the solve.

All runs with prefactor 1 (fields in e/Å², so ``α`` is a volume whatever the
energy unit), times ``k_e`` at the end. Crystals (``pbc`` all true) use P3M
tuned by :func:`~torchpme.tuning.multipoles.tune_multipoles` for ``accuracy``,
on a mesh then held fixed (smooth in the cell); clusters (all false) the exact
bare sum over all pairs. The error estimate grows with the mean
squares of the charges and of the total dipoles: tuning asks for ``accuracy /
MOMENT_HEADROOM`` and is redone when either grows beyond ``MOMENT_HEADROOM``
times what it saw, the cell changes by over ``retune_threshold`` or N changes.
"""

import math
from typing import Any, Dict, NamedTuple, Optional

import numpy as np
import torch

from .._core.kspace import mesh_size
from .._core.validation import check_finite, message
from ..calculators import Calculator, P3MCalculator
from ..multipoles import MultipoleCalculator
from ..neighbors import compute_neighbors
from ..polarisation import induce, stationary_energy
from ..potentials import CoulombPotential
from ..tuning.multipoles import tune_multipoles
from . import engine
from .geometry import all_pairs, strain_leaves, stress_from
from .parameters import default_cutoff
from .structures import charges_from_atoms, check_neutral

__all__ = ["MultipoleState", "changed_arrays", "evaluate_multipoles"]

#: the per-atom arrays that select this path
ARRAYS = ("dipoles", "polarizabilities")
#: growth of the mean-square moments a tuning covers (module docstring)
MOMENT_HEADROOM = 1.25


class Evaluated(NamedTuple):
    """What :func:`evaluate_multipoles` returns (prefactor 1): energy, forces,
    ``(3, 3)`` stress (crystals), induced dipoles and iterations (or None)."""

    energy: float
    forces: np.ndarray
    stress: Optional[np.ndarray]
    induced: Optional[torch.Tensor]
    iterations: Optional[int]


def changed_arrays(before, after) -> list:
    """The arrays read here (charges, dipoles, polarisabilities) that differ
    between two ``Atoms``: ASE compares only its own, and would keep the results
    of old predictions at the same positions."""
    names = ("charges", *ARRAYS) if before is not None else ()
    old, new = (getattr(atoms, "arrays", {}) for atoms in (before, after))
    return [
        name for name in names
        if (name in old) != (name in new)
        or (name in old and not np.array_equal(old[name], new[name]))
    ]  # fmt: skip


def moment_arrays(atoms):
    """``(dipoles (N, 3), polarisabilities (N,) or None)`` of ``atoms.arrays``,
    checked: shapes, finite, ``α > 0``."""
    n, arrays = len(atoms), atoms.arrays
    dipoles = np.asarray(arrays.get("dipoles", np.zeros((n, 3))), dtype=float)
    alpha = arrays.get("polarizabilities")
    checks = [("dipoles", dipoles, (n, 3), "(N, 3), in e·Å")]
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=float)
        checks.append(("polarizabilities", alpha, (n,), "(N,), in Å³"))
    for name, value, shape, text in checks:
        label = f'atoms.arrays["{name}"]'
        if value.shape != shape:
            raise ValueError(message(label, f"of shape {text} with N = {n}",
                                     f"shape {list(value.shape)}"))  # fmt: skip
        if not np.all(np.isfinite(value)):
            raise ValueError(message(label, "finite", "NaN or infinite entries"))
    if alpha is not None and not np.all(alpha > 0.0):
        raise ValueError(message('atoms.arrays["polarizabilities"]', "> 0 (leave "
                                 "the array out for no polarisation)",
                                 f"minimum {alpha.min():g}"))  # fmt: skip
    return dipoles, alpha


def evaluate_multipoles(
    module: MultipoleCalculator,
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    polarisabilities: Optional[torch.Tensor],
    thole: Optional[float],
    cell: torch.Tensor,
    positions: torch.Tensor,
    cutoff: Optional[float],
    initial: Optional[torch.Tensor] = None,
) -> Evaluated:
    """Energy, forces, stress (mesh modules only) and induced dipoles (module
    docstring) with a module of prefactor 1, over the pairs within ``cutoff``
    (crystals) or all pairs (the bare sum). ``initial`` starts the solve."""
    crystal, n = module.is_mesh, positions.shape[0]
    positions, strain, c, r = strain_leaves(cell, positions, crystal)
    if crystal:
        pairs, _, shifts = compute_neighbors(
            positions.detach(), cell.detach(), cutoff, return_shifts=True
        )
        images = shifts.to(r.dtype) @ c
    else:
        pairs = all_pairs(n, positions.device)
        images = torch.zeros(pairs.shape[0], 3, dtype=r.dtype, device=r.device)
    vectors = r[pairs[:, 1]] - r[pairs[:, 0]] + images
    system = (c, r, pairs, vectors)
    induced = None
    if polarisabilities is not None:
        fixed = [x.detach() for x in system]
        with torch.no_grad():
            field = module(charges, dipoles, *fixed)[1]
            induced = induce(module, polarisabilities, field, *fixed, thole=thole,
                             initial=initial)  # fmt: skip
        dipoles = dipoles + induced.dipoles
    energy = module.energy(charges, dipoles, *system)
    if induced is not None:
        energy = energy + stationary_energy(
            induced.dipoles, polarisabilities, pairs, vectors, thole
        )
    leaves = [positions, strain] if crystal else [positions]
    gradients = torch.autograd.grad(energy, leaves)
    stress = None
    if crystal:
        stress = stress_from(gradients[1], cell).double().cpu().numpy()
    return Evaluated(
        float(energy.detach()), (-gradients[0]).double().cpu().numpy(), stress,
        None if induced is None else induced.dipoles,
        None if induced is None else induced.iterations,
    )  # fmt: skip


class MultipoleState:
    """The dipole path of :class:`torchpme.ase.TorchPMECalculator`: its module,
    what it was tuned for, and the last induced dipoles (the next solve's start).

    Args:
        thole: Thole's damping ``a`` of the induced dipoles, or ``None``.
    """

    def __init__(self, thole: Optional[float]):
        if thole is not None and (
            isinstance(thole, bool)
            or not isinstance(thole, (int, float))
            or not 0.0 < thole < math.inf
        ):
            expected = "a finite number > 0 or None"
            raise ValueError(message("thole", expected, f"{thole!r}"))
        #: Thole's ``a``; how many times the module was tuned (or built)
        self.thole, self.tunings = thole, 0
        #: the :class:`~torchpme.tuning.multipoles.MultipoleTuning` in use
        #: (None for a cluster) and its real-space cutoff
        self.tuning, self.cutoff = None, None
        self._module: Optional[MultipoleCalculator] = None
        self._tuned_for: Optional[Dict[str, Any]] = None
        self._induced: Optional[torch.Tensor] = None

    def calculate(self, calc, atoms) -> bool:
        """Whether ``atoms`` carry dipoles or polarisabilities; if so, set the
        ``results``, ``induced_dipoles``, ``polarisation_iterations`` and
        ``estimated_error`` of the ASE calculator ``calc`` (whose options
        apply), else only clear its induced dipoles."""
        calc.induced_dipoles = calc.polarisation_iterations = None
        if not any(name in atoms.arrays for name in ARRAYS):
            return False
        periodic = [bool(p) for p in atoms.pbc]
        if calc.qeq is not None:
            expected = "None with dipoles or polarizabilities (not combined)"
            raise ValueError(message("qeq", expected, "a table"))
        if any(periodic) != all(periodic):
            expected = "all True or all False with dipoles (no slabs or wires yet)"
            raise ValueError(message("atoms.pbc", expected, f"{periodic}"))
        # P3M's B-splines keep the dipolar energy smooth, PME's weights do not
        allowed = ["auto", "p3m"] if all(periodic) else ["auto"]
        if calc.method not in allowed or calc.smearing is not None or calc.params:
            expected = f"one of {allowed}, without smearing or params, with dipoles"
            given = f"'{calc.method}', smearing {calc.smearing}, params {calc.params}"
            raise ValueError(message("method", expected, given))
        dipoles, alpha = moment_arrays(atoms)
        given = calc.charges is not None or charges_from_atoms(atoms) is not None
        charges = calc._atom_charges(atoms) if given else np.zeros(len(atoms))
        check_neutral(charges, calc.allow_charged, "pass allow_charged=True")
        like = {"dtype": calc.dtype, "device": calc.device}
        q, mu, cell, positions = (
            torch.tensor(np.asarray(a, dtype=float), **like)
            for a in (charges, dipoles, atoms.cell[:], atoms.positions)
        )
        check_finite("positions", positions)
        engine.check_periodic(periodic, cell, positions)
        alpha = None if alpha is None else torch.tensor(alpha, **like)
        start = self._induced  # the previous step's, if it fits
        if start is None or start.shape != mu.shape or alpha is None:
            start = None
        moments = mu if start is None else mu + start
        for _ in range(2):  # a second pass when the induced dipoles need a retune
            if self._stale(calc, periodic, q, moments, cell):
                self._tune(calc, periodic, q, moments, cell, positions)
            out = evaluate_multipoles(self._module, q, mu, alpha, self.thole, cell,
                                      positions, self.cutoff, start)  # fmt: skip
            if out.induced is None:
                break
            start, moments = out.induced, mu + out.induced
            if not self._stale(calc, periodic, q, moments, cell):
                break
        self._induced = out.induced
        if out.induced is not None:
            calc.induced_dipoles = out.induced.double().cpu().numpy()
        calc.polarisation_iterations = out.iterations
        error = None if self.tuning is None else self.tuning.force_error
        calc.estimated_error = None if error is None else error * calc.prefactor
        k = calc.prefactor
        energy, forces = k * out.energy, k * out.forces
        calc.results = {"energy": energy, "free_energy": energy, "forces": forces,
                        "charges": charges.copy()}  # fmt: skip
        if out.stress is not None:  # Voigt: xx, yy, zz, yz, xz, xy
            s = k * out.stress
            calc.results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return True

    def _stale(self, calc, periodic, q, moments, cell) -> bool:
        """Whether the module must be (re)built (module docstring)."""
        old = self._tuned_for
        if old is None or old["periodic"] != periodic or old["n"] != q.shape[0]:
            return True
        if not all(periodic):
            return False  # the bare sum depends on nothing else
        q2, m2 = _mean_squares(q, moments)
        change = torch.linalg.norm(cell.detach().double().cpu() - old["cell"])
        limit = calc.retune_threshold * torch.linalg.norm(old["cell"])
        return (
            bool(change > limit)
            or q2 > MOMENT_HEADROOM * old["q2"]
            or m2 > MOMENT_HEADROOM * old["m2"]
        )

    def _tune(self, calc, periodic, q, moments, cell, positions) -> None:
        """Tune and build the module for these moments (a crystal), or build
        the bare sum (a cluster)."""
        if all(periodic):
            n = q.shape[0]
            self.cutoff = (
                default_cutoff(cell, n) if calc.cutoff is None else calc.cutoff
            )
            host = [x.detach().double().cpu() for x in (q, moments, cell, positions)]
            accuracy = calc.accuracy / calc.prefactor / MOMENT_HEADROOM
            self.tuning = tune_multipoles(*host, self.cutoff, accuracy)
            # the tuner's spacing puts the shortest lattice vector exactly at a
            # power-of-two size, which any stretch would double: fix the mesh
            lengths = torch.linalg.norm(host[2], dim=1).tolist()
            mesh = mesh_size(lengths, self.tuning.params["mesh_spacing"])
            potential = CoulombPotential(smearing=self.tuning.smearing)
            inner = P3MCalculator(potential, **self.tuning.params, fixed_mesh=mesh)
        else:
            self.tuning, self.cutoff = None, None
            inner = Calculator(CoulombPotential())
        module = MultipoleCalculator(inner)
        self._module = module.to(dtype=calc.dtype, device=calc.device)
        q2, m2 = _mean_squares(q, moments)
        self._tuned_for = {"periodic": periodic, "n": q.shape[0], "q2": q2,
                           "m2": m2, "cell": cell.detach().double().cpu()}  # fmt: skip
        self.tunings += 1


def _mean_squares(q: torch.Tensor, moments: torch.Tensor):
    """``(⟨q²⟩, ⟨|μ|²⟩)`` as floats."""
    return float((q.double() ** 2).mean()), float((moments.double() ** 2).sum(1).mean())
