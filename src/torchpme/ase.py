"""An ASE calculator for the electrostatics of fixed point charges.

.. code-block:: python

    from ase.build import bulk
    from torchpme.ase import TorchPMECalculator

    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.calc = TorchPMECalculator(charges={"Na": 1.0, "Cl": -1.0})
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

The energy is the Coulomb energy of the charges,

.. math::

    E = \\sum_i q_i V_i = \\frac{k_e}{2} \\sum_{i} \\sum_{j, \\mathbf n}{}^{'}
        \\frac{q_i q_j}{\\lVert \\mathbf r_j - \\mathbf r_i + \\mathbf n A \\rVert},

with ``k_e = prefactor`` (default :data:`torchpme.prefactors.eV_A`: charges in e,
lengths in Å, energies in eV). Forces are ``−∂E/∂r_i``; the stress is
``σ = (1/V) ∂E/∂ε`` for a homogeneous strain ``ε`` of positions and cell (ASE's
convention, Voigt order xx, yy, zz, yz, xz, xy).

Boundary conditions follow ``atoms.pbc``:

* ``[T, T, T]``: Ewald, PME or P3M (``method``), tuned for ``accuracy``;
* two periodic axes, e.g. ``[T, T, F]``: a slab. PME and P3M (and ``"auto"``)
  compute the 2-D periodic sum exactly on a mesh doubled along the plane's
  normal: no vacuum needed, the cell's free vector is ignored. With
  ``method="ewald"`` the free vector must be along its Cartesian axis and
  include a vacuum gap (at least as thick as the slab), and the Yeh–Berkowitz
  2-D correction removes the interaction between periodic copies. No stress;
* one periodic axis, e.g. ``[F, F, T]``: a wire, the 1-D periodic sum on a mesh
  doubled across the axis (PME or P3M; ``"auto"`` takes P3M); no stress;
* ``[F, F, F]``: the bare Coulomb sum over all pairs (exact, O(N²)), or with
  ``method="pme"``/``"p3m"`` the free-space mesh (O(N log N), for large
  clusters; ``"auto"`` takes PME above 3000 atoms); no cell needed, no stress.

**Charge equilibration.** With ``qeq={"Na": (χ, J, σ), ...}`` the charges are not
given but solved for on every calculation: those minimising
``Σχq + ½ΣJq² + E_C`` at total charge ``total_charge``, with ``E_C`` the Coulomb
energy of Gaussian charges of widths ``σ`` (:mod:`torchpme.qeq`; ``χ`` in eV per
e, ``J`` in eV per e², ``σ`` in Å with the default prefactor). The energy is
that minimum, the forces and stress its derivatives; the solve starts from the
previous step's charges, and ``qeq_iterations`` holds what the last one took.

**Dipoles and polarisation.** Point dipoles ``atoms.arrays["dipoles"]`` (N×3,
e·Å) join the charges, and ``atoms.arrays["polarizabilities"]`` (N, Å³) add induced
dipoles (Thole's ``thole``; ``induced_dipoles``, ``polarisation_iterations``):
:mod:`torchpme._cli.multipoles`, P3M tuned for ``accuracy`` in crystals, the bare
sum in clusters; not with ``qeq``, slabs or wires.

Parameters (cutoff, smearing, k-space) are tuned on the first calculation and
kept while the number of atoms, the charges and the pbc stay the same and the
cell changes by less than ``retune_threshold`` (relative, in the Frobenius
norm): an MD run at constant volume tunes once.

**Accuracy and MD.** ``accuracy`` is the target RMS force error in the units of
the forces (eV/Å with the default prefactor; energy unit of ``prefactor`` per Å
in general); after a calculation ``estimated_error`` holds the estimate of what
ran, in the same units. The real-space sum stops sharply at the cutoff, so the
energy jumps a little whenever a pair crosses it and NVE runs drift. The
default, ``DEFAULT_ACCURACY`` = 1e-5 eV/Å, is chosen for MD with the target of
an energy drift below 1e-4 eV per atom per ps for an ionic crystal at 300 K
with a 2 fs velocity-Verlet step: rock salt (64 and 216 ions, with a smooth
short-range repulsion) drifts by about 1e-6 eV per atom per ps, 1e-4 eV/Å by
about 3e-5 and 1.4e-3 eV/Å by 6e-4 to 9e-4 (``tests/test_front_door_cli.py``
checks the default). The price is a larger cutoff and a finer mesh, so a more
expensive step (``benchmarks/calculators.py`` measures it); single points and
short or thermostatted runs can pass ``accuracy=1e-4`` or looser.
"""

from typing import Any, ClassVar, Dict, List, Optional, Sequence

import numpy as np
import torch
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from ._cli import engine
from ._cli.frontdoor import (
    check_arguments,
    check_fixed,
    reported_error,
    rounding_error,
    warn_rounding,
)
from ._cli.multipoles import MultipoleState, changed_arrays
from ._cli.options import available_device
from ._cli.qeq import evaluate_qeq, gaussian_cutoff, qeq_arrays
from ._cli.structures import charges_for, charges_from_atoms, check_neutral
from ._core.validation import message

__all__ = ["DEFAULT_ACCURACY", "TorchPMECalculator"]

#: default ``accuracy``: RMS force error in eV/Å (converted to the units of
#: ``prefactor``), tight enough for NVE molecular dynamics (module docstring)
DEFAULT_ACCURACY = 1e-5

_LABELS = {
    name: name
    for name in ("method", "smearing", "cutoff", "accuracy", "params",
                 "lr_wavelength", "mesh_spacing", "interpolation_nodes")
}  # fmt: skip


def _default_prefactor() -> float:
    return engine.unit_prefactor("eV_A")


class TorchPMECalculator(Calculator):
    """ASE calculator: Coulomb energy, forces, stress, per-atom potentials.

    Args:
        charges: per-atom charges (a sequence of length N), a ``{symbol: charge}``
            mapping, or ``None`` to take them from the atoms (a ``charges`` array
            or non-zero ``initial_charges``).
        method: ``"auto"`` (Ewald or P3M, whichever a cost model of the cell,
            cutoff and accuracy finds cheaper, see :mod:`torchpme._cli.cost`;
            the direct sum for non-periodic atoms), ``"ewald"``, ``"pme"`` or
            ``"p3m"``.
        accuracy: target RMS force error in the units of the forces (eV/Å with
            the default prefactor); default ``DEFAULT_ACCURACY`` eV/Å expressed
            in the units of ``prefactor``, chosen for NVE MD (module docstring).
        cutoff: real-space cutoff in Å (default: about 2.2 mean interatomic
            distances, between 5 and 12 Å).
        prefactor: Coulomb constant ``1/(4πε₀)`` in the units wanted (default eV
            with Å, :data:`torchpme.prefactors.eV_A`).
        device: torch device (default CPU).
        dtype: torch dtype of the computation (default float64).
        smearing: fix the smearing instead of tuning it.
        params: fix k-space parameters (``lr_wavelength`` for Ewald,
            ``mesh_spacing``/``interpolation_nodes`` for PME and P3M); the others
            are tuned around them. Other keys, or keys of another method, are
            errors.
        retune_threshold: relative change of the cell that triggers re-tuning.
        allow_charged: accept a non-neutral system (a uniform background charge
            then neutralises it).
        **kwargs: ASE's ``Calculator`` arguments (``label``, ``directory``,
            ``atoms``, ``restart``); any other keyword is a ``TypeError``.
        qeq: ``{symbol: (χ, J, σ)}``: equilibrate the charges (module
            docstring) instead of taking ``charges``.
        total_charge: the total charge of the equilibrated charges.
        thole: Thole's damping ``a`` of induced dipoles (module docstring), or None.

    A ``{symbol: charge}`` mapping may hold elements the atoms do not have (one
    table for several structures), but only chemical symbols.

    Properties: ``energy``, ``free_energy`` (the same), ``energies`` (``q_i V_i``),
    ``forces``, ``stress`` (3-D periodic only), ``charges`` and ``potentials``
    (``V_i``, energy per unit charge; also :meth:`get_potentials`).
    """

    implemented_properties: ClassVar[List[str]] = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "charges",
        "potentials",
    ]
    #: ``(N, 3)`` induced dipoles and iterations of the last solve (or None)
    induced_dipoles: Optional[np.ndarray] = None
    polarisation_iterations: Optional[int] = None

    def __init__(
        self,
        charges: Sequence[float] | Dict[str, float] | np.ndarray | None = None,
        method: str = "auto",
        accuracy: Optional[float] = None,
        cutoff: Optional[float] = None,
        prefactor: Optional[float] = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        smearing: Optional[float] = None,
        params: Optional[Dict[str, Any]] = None,
        retune_threshold: float = 0.05,
        allow_charged: bool = False,
        qeq: Optional[Dict[str, Sequence[float]]] = None,
        total_charge: float = 0.0,
        thole: Optional[float] = 0.39,
        **kwargs,
    ):
        check_arguments(
            kwargs, method, accuracy, dtype, retune_threshold, charges, qeq,
            total_charge,
        )  # fmt: skip
        self.multipoles = MultipoleState(thole)  # dipoles and polarisation
        super().__init__(**kwargs)
        params = dict(params or {})
        self.qeq = None if qeq is None else dict(qeq)
        self.total_charge = float(total_charge)
        #: conjugate-gradient iterations of the last equilibration
        self.qeq_iterations: Optional[int] = None
        self._equilibrated: Optional[np.ndarray] = None
        self._tuned_at = -1
        self.charges = charges
        self.method = method
        if prefactor is not None and not (
            isinstance(prefactor, (int, float)) and 0.0 < prefactor < float("inf")
        ):
            raise ValueError(
                message("prefactor", "a finite number > 0", f"{prefactor!r}")
            )
        self.prefactor = _default_prefactor() if prefactor is None else float(prefactor)
        if accuracy is None:
            accuracy = DEFAULT_ACCURACY * self.prefactor / _default_prefactor()
        #: target RMS force error, in the units of the forces
        self.accuracy = float(accuracy)
        self.cutoff = cutoff
        self.device = available_device(device, "device")
        self.dtype = dtype
        self.smearing = smearing
        self.params = params
        self.retune_threshold = float(retune_threshold)
        self.allow_charged = allow_charged
        #: the :class:`Parameters` in use (``None`` before the first calculation)
        self.parameters_in_use: Optional[engine.Parameters] = None
        #: how many times parameters were tuned (or chosen)
        self.tunings = 0
        #: estimated RMS force error of the parameters in use, in the units of
        #: the forces (``None`` before the first calculation and for the exact
        #: direct sum)
        self.estimated_error: Optional[float] = None
        self._calculator: Optional[torch.nn.Module] = None
        self._tuned_for: Optional[Dict[str, Any]] = None
        self._rounding_unchecked = True

    def _atom_charges(self, atoms) -> np.ndarray:
        symbols = atoms.get_chemical_symbols()
        if self.charges is None:
            charges = charges_from_atoms(atoms)
            if charges is None:
                raise ValueError(
                    message(
                        "charges",
                        "given to TorchPMECalculator or stored on the atoms "
                        "(initial_charges or a 'charges' array)",
                        "no charges",
                    )
                )
        elif isinstance(self.charges, dict):
            charges = charges_for(symbols, self.charges, argument="charges")
        else:
            charges = np.asarray(self.charges, dtype=float).reshape(-1)
        if charges.shape[0] != len(atoms):
            raise ValueError(
                message(
                    "charges", f"one per atom ({len(atoms)})", f"{charges.shape[0]}"
                )
            )
        if not np.all(np.isfinite(charges)):
            raise ValueError(message("charges", "finite", "NaN or infinite entries"))
        return charges

    def _needs_tuning(self, charges, cell: np.ndarray, periodic: List[bool]) -> bool:
        previous = self._tuned_for
        if previous is None or self._calculator is None:
            return True
        if previous["periodic"] != periodic or not np.array_equal(
            previous["charges"], charges
        ):
            return True
        reference = previous["cell"]
        change = np.linalg.norm(cell - reference) / max(
            np.linalg.norm(reference), 1e-300
        )
        return bool(change > self.retune_threshold)

    def calculate(
        self,
        atoms=None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Compute all properties at once (energy, forces and, if defined, stress)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = [bool(p) for p in atoms.pbc]
        if "stress" in properties and not all(periodic):
            raise PropertyNotImplementedError(
                "stress is only defined for atoms periodic along all three axes"
            )
        if self.multipoles.calculate(self, atoms):  # dipoles or polarizabilities
            return
        if self.qeq is None:
            charges = self._atom_charges(atoms)
            check_neutral(charges, self.allow_charged, "pass allow_charged=True")
            tuned_for = charges
        else:
            arrays = qeq_arrays(atoms.get_chemical_symbols(), self.qeq, "qeq")
            # tuned for unit charges (_cli/qeq.py), retuned when the table changes
            charges = np.ones(len(atoms))
            tuned_for = np.concatenate(arrays)
        cell_array = np.asarray(atoms.cell[:], dtype=float)
        positions = torch.tensor(
            np.asarray(atoms.positions), dtype=self.dtype, device=self.device
        )
        cell = torch.tensor(cell_array, dtype=self.dtype, device=self.device)
        q = torch.tensor(charges, dtype=self.dtype, device=self.device).reshape(-1, 1)
        if not bool(torch.isfinite(positions).all()):
            raise ValueError(message("positions", "finite", "NaN or infinite entries"))
        engine.check_periodic(periodic, cell, positions, self.method, self.params)
        if self._needs_tuning(tuned_for, cell_array, periodic):
            check_fixed(
                self.method,
                periodic,
                self.params,
                self.smearing,
                _LABELS,
                self.cutoff,
            )
            accuracy = self.accuracy / self.prefactor  # the tuners' e²/Å²
            cutoff = self.cutoff
            if self.qeq is not None:
                cutoff = gaussian_cutoff(arrays[2], cutoff, cell, len(atoms))
            concrete = engine.resolve_method(
                self.method,
                len(atoms),
                periodic,
                params=self.params,
                cell=cell,
                cutoff=cutoff,
                accuracy=accuracy,
            )
            self.parameters_in_use = engine.choose_parameters(
                concrete,
                q,
                cell,
                positions,
                periodic,
                accuracy,
                cutoff,
                self.smearing,
                self.params,
            )
            self.estimated_error = reported_error(
                self.parameters_in_use, self.prefactor
            )
            self._calculator = engine.build_calculator(
                self.parameters_in_use, self.prefactor, self.dtype, self.device
            )
            self._tuned_for = {
                "periodic": periodic,
                "charges": tuned_for.copy(),
                "cell": cell_array.copy(),
            }
            self.tunings += 1
            self._rounding_unchecked = True
        if self.qeq is None:
            evaluation = engine.evaluate(
                self._calculator, self.parameters_in_use, q, cell, positions,
                periodic, stress=all(periodic),
            )  # fmt: skip
        else:
            same = self._equilibrated is not None and self.tunings == self._tuned_at
            solved = evaluate_qeq(
                self._calculator, self.parameters_in_use, arrays, self.total_charge,
                cell, positions, periodic, stress=all(periodic),
                initial=self._equilibrated if same else None,
            )  # fmt: skip
            evaluation, self.qeq_iterations = solved.evaluation, solved.iterations
            self._equilibrated, self._tuned_at = solved.charges, self.tunings
            charges = solved.charges
            q = torch.tensor(charges, dtype=self.dtype, device=self.device)[:, None]
        # in float32 the rounding of the arithmetic joins the method's estimate
        rounding = rounding_error(q, self.parameters_in_use, evaluation, self.dtype)
        self.estimated_error = reported_error(
            self.parameters_in_use, self.prefactor, rounding
        )
        if self._rounding_unchecked:
            # once per choice of parameters, not on every MD step
            warn_rounding(rounding, self.accuracy / self.prefactor, self.prefactor)
            self._rounding_unchecked = False
        energy = float(evaluation.energy)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": evaluation.energies.numpy(),
            "forces": evaluation.forces.numpy(),
            "charges": charges.copy(),
            "potentials": evaluation.potentials.numpy(),
        }
        if evaluation.stress is not None:
            s = evaluation.stress.numpy()
            self.results["stress"] = np.array(
                [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
            )

    def check_state(self, atoms, tol: float = 1e-15) -> List[str]:
        """ASE's changes and those of the arrays read here (ASE skips them)."""
        return super().check_state(atoms, tol) + changed_arrays(self.atoms, atoms)

    def get_potentials(self, atoms=None) -> np.ndarray:
        """Per-atom potentials ``V_i`` (energy per unit charge), shape ``(N,)``."""
        return self.get_property("potentials", atoms)
