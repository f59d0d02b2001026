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
* two periodic axes, e.g. ``[T, T, F]``: a slab. The cell's free vector must be
  along its Cartesian axis and include a vacuum gap (at least as thick as the
  slab); the Yeh–Berkowitz 2-D correction of the Coulomb potential removes the
  interaction between periodic copies along the free axis. No stress;
* ``[F, F, F]``: the bare Coulomb sum over all pairs (exact, O(N²)); no cell
  needed, no stress;
* one periodic axis: not supported.

Parameters (cutoff, smearing, k-space) are tuned on the first calculation and
kept while the number of atoms, the charges and the pbc stay the same and the
cell changes by less than ``retune_threshold`` (relative, in the Frobenius
norm): an MD run at constant volume tunes once.
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
from ._cli.structures import charges_for, charges_from_atoms, check_neutral
from ._core.validation import check_choice, message

__all__ = ["TorchPMECalculator"]


def _default_prefactor() -> float:
    return engine.unit_prefactor("eV_A")


class TorchPMECalculator(Calculator):
    """ASE calculator: Coulomb energy, forces, stress, per-atom potentials.

    Args:
        charges: per-atom charges (a sequence of length N), a ``{symbol: charge}``
            mapping, or ``None`` to take them from the atoms (a ``charges`` array
            or non-zero ``initial_charges``).
        method: ``"auto"`` (Ewald up to 2000 atoms, P3M above; the direct sum for
            non-periodic atoms), ``"ewald"``, ``"pme"`` or ``"p3m"``.
        accuracy: target of the parameter tuning (force error bound in Gaussian
            units, e²/Å², see :mod:`torchpme.tuning`).
        cutoff: real-space cutoff in Å (default: about 2.2 mean interatomic
            distances, between 5 and 12 Å).
        prefactor: Coulomb constant ``1/(4πε₀)`` in the units wanted (default eV
            with Å, :data:`torchpme.prefactors.eV_A`).
        device: torch device (default CPU).
        dtype: torch dtype of the computation (default float64).
        smearing: fix the smearing instead of tuning it.
        params: fix k-space parameters (``lr_wavelength`` for Ewald,
            ``mesh_spacing``/``interpolation_nodes`` for PME and P3M).
        retune_threshold: relative change of the cell that triggers re-tuning.
        allow_charged: accept a non-neutral system (a uniform background charge
            then neutralises it).

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

    def __init__(
        self,
        charges: Sequence[float] | Dict[str, float] | np.ndarray | None = None,
        method: str = "auto",
        accuracy: float = 1e-4,
        cutoff: Optional[float] = None,
        prefactor: Optional[float] = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        smearing: Optional[float] = None,
        params: Optional[Dict[str, Any]] = None,
        retune_threshold: float = 0.05,
        allow_charged: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("method", method, engine.METHODS)
        if not (isinstance(accuracy, (int, float)) and accuracy > 0.0):
            raise ValueError(message("accuracy", "a number > 0", f"{accuracy}"))
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(
                message("dtype", "torch.float32 or torch.float64", f"{dtype}")
            )
        if not retune_threshold >= 0.0:
            raise ValueError(
                message("retune_threshold", "a number >= 0", f"{retune_threshold}")
            )
        self.charges = charges
        self.method = method
        self.accuracy = float(accuracy)
        self.cutoff = cutoff
        self.prefactor = _default_prefactor() if prefactor is None else float(prefactor)
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = dtype
        self.smearing = smearing
        self.params = dict(params or {})
        self.retune_threshold = float(retune_threshold)
        self.allow_charged = allow_charged
        #: the :class:`Parameters` in use (``None`` before the first calculation)
        self.parameters_in_use: Optional[engine.Parameters] = None
        #: how many times parameters were tuned (or chosen)
        self.tunings = 0
        self._calculator: Optional[torch.nn.Module] = None
        self._tuned_for: Optional[Dict[str, Any]] = None

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
        charges = self._atom_charges(atoms)
        check_neutral(charges, self.allow_charged, "pass allow_charged=True")
        cell_array = np.asarray(atoms.cell[:], dtype=float)
        positions = torch.tensor(
            np.asarray(atoms.positions), dtype=self.dtype, device=self.device
        )
        cell = torch.tensor(cell_array, dtype=self.dtype, device=self.device)
        q = torch.tensor(charges, dtype=self.dtype, device=self.device).reshape(-1, 1)
        if not bool(torch.isfinite(positions).all()):
            raise ValueError(message("positions", "finite", "NaN or infinite entries"))
        engine.check_periodic(periodic, cell)
        if self._needs_tuning(charges, cell_array, periodic):
            concrete = engine.resolve_method(self.method, len(atoms), periodic)
            self.parameters_in_use = engine.choose_parameters(
                concrete,
                q,
                cell,
                positions,
                periodic,
                self.accuracy,
                self.cutoff,
                self.smearing,
                self.params,
            )
            self._calculator = engine.build_calculator(
                self.parameters_in_use, self.prefactor, self.dtype, self.device
            )
            self._tuned_for = {
                "periodic": periodic,
                "charges": charges.copy(),
                "cell": cell_array.copy(),
            }
            self.tunings += 1
        evaluation = engine.evaluate(
            self._calculator,
            self.parameters_in_use,
            q,
            cell,
            positions,
            periodic,
            stress=all(periodic),
        )
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

    def get_potentials(self, atoms=None) -> np.ndarray:
        """Per-atom potentials ``V_i`` (energy per unit charge), shape ``(N,)``."""
        return self.get_property("potentials", atoms)
