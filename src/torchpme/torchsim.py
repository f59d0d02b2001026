"""torchpme's long-range electrostatics as a torch-sim model.

:class:`TorchPMEModel` gives every system of a torch-sim ``SimState`` batch (many
systems, periodic or not) its Coulomb energy, forces and stress from one batched
call of a torchpme calculator (:meth:`~torchpme.Calculator.energy_batch`);
:class:`SumModel` adds it to a short-range torch-sim model.

The energy of system ``b`` is

.. math::

    E_b = \\sum_{i \\in b} q_i V_i, \\qquad
    \\mathbf F_i = -\\frac{\\partial E_b}{\\partial \\mathbf r_i}, \\qquad
    \\sigma_b = \\frac{1}{V_b} \\frac{\\partial E_b}{\\partial \\varepsilon},

with ``V_i`` the potential of the calculator at atom ``i`` and ``ε`` a homogeneous
strain of positions and cell (``r → r (1 + ε)``, ``A → A (1 + ε)`` with the
lattice vectors as rows of ``A``; torch-sim's ``state.cell`` holds them as
columns, ``state.row_vector_cell`` as rows). This is ASE's sign and the one
torch-sim's integrators and cell optimizers assume (``get_pressure``:
``P = -tr(σ)/3``; cell force ``-V (σ + P_ext)``): a crystal that wants to expand
has a negative stress. Units are those
of the calculator: with ``prefactor=torchpme.prefactors.eV_A``, charges in e and
positions in Å, torch-sim's metal units (eV, eV/Å, eV/Å³).

Importing this module requires torch-sim: ``pip install "torchpme[torchsim]"``.

Example (Coulomb plus a short-range torch-sim model, batched over two crystals):
    >>> import torch
    >>> import torch_sim as ts
    >>> from ase.build import bulk
    >>> from torchpme import CoulombPotential, EwaldCalculator
    >>> from torchpme.prefactors import eV_A
    >>> from torchpme.torchsim import SumModel, TorchPMEModel
    >>> from torch_sim.models.soft_sphere import SoftSphereModel
    >>> calculator = EwaldCalculator(
    ...     CoulombPotential(smearing=1.0, prefactor=eV_A), lr_wavelength=0.5
    ... ).to(torch.float64)
    >>> coulomb = TorchPMEModel(calculator, charges={11: 1.0, 17: -1.0}, cutoff=5.0)
    >>> repulsion = SoftSphereModel(sigma=3.3, epsilon=4.0, dtype=torch.float64)
    >>> model = SumModel(coulomb, repulsion)
    >>> crystals = [bulk("NaCl", "rocksalt", a=a, cubic=True) for a in (5.6, 5.7)]
    >>> state = ts.io.atoms_to_state(crystals, "cpu", torch.float64)
    >>> out = model(state)
    >>> out["energy"].shape, out["forces"].shape, model.compute_stress
    (torch.Size([2]), torch.Size([16, 3]), False)
    >>> init, step = ts.nve(model, dt=torch.tensor(0.1), kT=torch.tensor(0.025))
    >>> state = step(init(state), dt=torch.tensor(0.1))  # one 1 fs MD step

:class:`SumModel` returns a stress only when every part does. Check the short-range
model's own conventions: in torch-sim 0.3.0 the forces of ``SoftSphereModel`` and
``LennardJonesModel`` are twice ``-∂E/∂r`` (their energies are right), the
Lennard-Jones stress is twice ``(1/V) ∂E/∂ε`` and the soft-sphere one has the
opposite sign as well.
"""

from typing import Callable, Dict, List, Mapping, Optional

import torch

try:
    from torch_sim.models.interface import ModelInterface
    from torch_sim.state import SimState
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'torchpme.torchsim needs torch-sim: pip install "torchpme[torchsim]"'
    ) from error

from ._core.validation import check_positive, message
from .calculators import Calculator
from .neighbors import neighbor_pairs

__all__ = ["SumModel", "TorchPMEModel"]

ChargeSource = Mapping[int, float] | Callable[[SimState], torch.Tensor]


def _periodic_of(state: SimState, n_systems: int) -> torch.Tensor:
    """``(B, 3)`` bools from ``state.pbc``: a bool (torch-sim 0.3), 3 bools,
    or ``(B, 3)``."""
    pbc = torch.as_tensor(state.pbc, dtype=torch.bool, device=state.positions.device)
    if pbc.dim() == 0:
        pbc = pbc.expand(3)
    if pbc.shape == (3,):
        pbc = pbc.expand(n_systems, 3)
    if pbc.shape != (n_systems, 3):
        raise ValueError(
            f"state.pbc must be a bool, 3 bools or (n_systems, 3); got {pbc.shape}"
        )
    return pbc


class TorchPMEModel(ModelInterface):
    """Coulomb energies, forces and stress of a torch-sim batch from a torchpme
    calculator.

    All systems of the state go through one :meth:`~torchpme.Calculator.energy_batch`
    call: pairs within ``cutoff`` per system (periodic images along the periodic
    axes of ``state.pbc``), then forces and stress by one backward pass. See the
    module docstring for the formulas and the sign of the stress.

    Args:
        calculator: any torchpme calculator: :class:`~torchpme.EwaldCalculator`,
            :class:`~torchpme.PMECalculator` or :class:`~torchpme.P3MCalculator`
            with a range-separated potential (its smearing and k-space parameters
            set for the ``cutoff``), or a bare ``Calculator(CoulombPotential())``
            for clusters (then ``cutoff`` must exceed the largest distance in a
            cluster, as every pair is summed directly). Non-periodic systems use
            the open-boundary mesh of PME and P3M or the bare sum; Ewald needs
            three periodic axes. Its dtype and device must match the state's.
        charges: ``{atomic_number: charge}``, or a callable of the ``SimState``
            returning per-atom charges ``(n_atoms,)`` (or ``(n_atoms, C)`` for a
            calculator of ``C`` channels), for example a learned charge model (a
            ``torch.nn.Module`` is registered as a submodule). The callable sees
            the state with the positions and cell the energy is differentiated
            against, so charges that depend on the positions contribute to
            forces and stress.
        cutoff: real-space cutoff of the neighbour list, in length units.
        device: torch device (default: the calculator's, else CPU).
        dtype: floating dtype of the computation; the state must use it.
        compute_forces: return ``"forces"``.
        compute_stress: return ``"stress"`` (zeros for systems that are not
            periodic along all three axes).

    ``forward(state)`` returns a dict with

    * ``"energy"``: ``(n_systems,)``;
    * ``"forces"``: ``(n_atoms, 3)``, if ``compute_forces``;
    * ``"stress"``: ``(n_systems, 3, 3)``, if ``compute_stress``.

    The outputs keep a graph (for training through forces) only when a parameter
    of the model (of the calculator or a charge module) requires a gradient.

    Example:
        >>> import torch
        >>> import torch_sim as ts
        >>> from ase.build import bulk
        >>> from torchpme import CoulombPotential, PMECalculator
        >>> from torchpme.prefactors import eV_A
        >>> calculator = PMECalculator(
        ...     CoulombPotential(smearing=1.0, prefactor=eV_A), mesh_spacing=0.3
        ... ).to(torch.float64)
        >>> model = TorchPMEModel(calculator, {11: 1.0, 17: -1.0}, cutoff=5.0)
        >>> state = ts.io.atoms_to_state(
        ...     bulk("NaCl", "rocksalt", a=5.64), "cpu", torch.float64
        ... )
        >>> round(float(model(state)["energy"][0]), 2)  # -α_M k_e / d, α_M = 1.7476
        -8.92
    """

    def __init__(
        self,
        calculator: Calculator,
        charges: ChargeSource,
        cutoff: float,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        compute_forces: bool = True,
        compute_stress: bool = True,
    ):
        super().__init__()
        if not isinstance(calculator, Calculator):
            raise TypeError(
                message("calculator", "a torchpme calculator", f"{type(calculator)}")
            )
        check_positive("cutoff", cutoff)
        if device is None:
            tensors = list(calculator.buffers()) + list(calculator.parameters())
            device = tensors[0].device if tensors else torch.device("cpu")
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_forces = bool(compute_forces)
        self._compute_stress = bool(compute_stress)
        self._memory_scales_with = "n_atoms_x_density"
        self.calculator = calculator
        self.cutoff = float(cutoff)
        self._charge_fn: Optional[Callable[[SimState], torch.Tensor]] = None
        if callable(charges):
            self._charge_fn = charges
            if isinstance(charges, torch.nn.Module):
                self.charge_model = charges
            self.register_buffer("charge_table", None)
        else:
            table = dict(charges)
            if not table:
                raise ValueError("charges must map at least one atomic number")
            size = max(int(z) for z in table) + 1
            values = torch.full((size,), float("nan"), dtype=dtype)
            for z, q in table.items():
                values[int(z)] = float(q)
            self.register_buffer("charge_table", values.to(self._device))

    def _charges(self, state: SimState) -> torch.Tensor:
        """``(n_atoms, C)`` charges of the (strained) state."""
        if self._charge_fn is not None:
            charges = self._charge_fn(state)
        else:
            numbers = state.atomic_numbers
            table = self.charge_table
            if int(numbers.max()) >= table.shape[0] or int(numbers.min()) < 0:
                raise ValueError(
                    "charges has no entry for atomic numbers "
                    f"{sorted(set(numbers.tolist()) - set(range(table.shape[0])))}"
                )
            charges = table.index_select(0, numbers)
            if torch.isnan(charges).any():
                missing = sorted(set(numbers[torch.isnan(charges)].tolist()))
                raise ValueError(f"charges has no entry for atomic numbers {missing}")
        if charges.dim() == 1:
            charges = charges.unsqueeze(-1)
        if charges.shape[0] != state.positions.shape[0] or charges.dim() != 2:
            raise ValueError(
                "charges must be (n_atoms,) or (n_atoms, C), got "
                f"{tuple(charges.shape)} for {state.positions.shape[0]} atoms"
            )
        return charges.to(self._dtype)

    def _pairs(
        self,
        positions: torch.Tensor,
        cells: torch.Tensor,
        system_idx: torch.Tensor,
        periodic: torch.Tensor,
        n_systems: int,
    ):
        """Pairs ``(P, 2)`` into the packed atoms and their integer shifts
        ``(P, 3)``, searched per system (no gradient)."""
        indices: List[torch.Tensor] = []
        shifts: List[torch.Tensor] = []
        full = bool(getattr(self.calculator, "full_neighbor_list", False))
        counts = torch.bincount(system_idx, minlength=n_systems).tolist()
        starts = [0]
        for count in counts[:-1]:
            starts.append(starts[-1] + count)
        with torch.no_grad():
            for system in range(n_systems):
                if counts[system] == 0:
                    continue
                start = starts[system]
                atoms = positions[start : start + counts[system]].detach()
                pairs, shift = neighbor_pairs(
                    atoms,
                    cells[system].detach(),
                    self.cutoff,
                    periodic=periodic[system],
                    full_list=full,
                )
                indices.append(pairs + start)
                shifts.append(shift)
        if not indices:
            empty = torch.zeros((0, 2), dtype=torch.long, device=positions.device)
            return empty, torch.zeros((0, 3), dtype=torch.long, device=empty.device)
        return torch.cat(indices), torch.cat(shifts)

    def forward(self, state: SimState, **kwargs) -> Dict[str, torch.Tensor]:
        """Energies ``(n_systems,)``, forces ``(n_atoms, 3)`` and stress
        ``(n_systems, 3, 3)`` of ``state`` (a ``SimState`` or a dict of its
        fields)."""
        if not isinstance(state, SimState):
            state = dict(state)
            state.setdefault("masses", torch.ones_like(state["positions"][:, 0]))
            state = SimState(**state)
        if state.positions.dtype != self._dtype:
            raise TypeError(
                f"the state is {state.positions.dtype}, the model {self._dtype}"
            )
        system_idx = state.system_idx
        n_systems = state.cell.shape[0]
        if system_idx.numel() > 1 and bool((system_idx[1:] < system_idx[:-1]).any()):
            raise ValueError(
                "state.system_idx must be sorted (atoms grouped by system)"
            )
        periodic = _periodic_of(state, n_systems)
        fully_periodic = periodic.all(dim=1)

        create_graph = any(p.requires_grad for p in self.parameters())
        with torch.enable_grad():
            positions = state.positions.detach()
            cells = state.row_vector_cell.detach()  # rows are lattice vectors
            strain = torch.zeros(
                (n_systems, 3, 3), dtype=self._dtype, device=positions.device
            )
            if self._compute_forces:
                positions = positions.requires_grad_(True)
            if self._compute_stress:
                strain.requires_grad_(True)
            deformation = torch.eye(3, dtype=self._dtype, device=strain.device) + strain
            strained_positions = torch.einsum(
                "ni,nij->nj", positions, deformation.index_select(0, system_idx)
            )
            strained_cells = cells @ deformation

            if self._charge_fn is not None:
                view = state.clone()
                view.positions = strained_positions
                view.row_vector_cell = strained_cells
                charges = self._charges(view)
            else:
                charges = self._charges(state)

            pairs, shifts = self._pairs(
                positions, cells, system_idx, periodic, n_systems
            )
            first, second = pairs[:, 0], pairs[:, 1]
            pair_cells = strained_cells.index_select(
                0, system_idx.index_select(0, first)
            )
            vectors = (
                strained_positions.index_select(0, second)
                - strained_positions.index_select(0, first)
                + torch.einsum("pi,pij->pj", shifts.to(self._dtype), pair_cells)
            )
            distances = torch.linalg.norm(vectors, dim=1)
            energy = self.calculator.energy_batch(
                charges,
                strained_cells,
                strained_positions,
                system_idx,
                pairs,
                distances,
                periodic=None if bool(fully_periodic.all()) else periodic,
            )

            inputs = []
            if self._compute_forces:
                inputs.append(positions)
            if self._compute_stress:
                inputs.append(strain)
            gradients = []
            if inputs:
                gradients = torch.autograd.grad(
                    energy.sum(),
                    inputs,
                    create_graph=create_graph,
                    allow_unused=True,
                )
                gradients = [
                    torch.zeros_like(x) if g is None else g
                    for x, g in zip(inputs, gradients)
                ]

        results = {"energy": energy if create_graph else energy.detach()}
        if self._compute_forces:
            results["forces"] = -gradients[0]
        if self._compute_stress:
            volumes = torch.abs(torch.linalg.det(cells))
            volumes = torch.where(fully_periodic, volumes, torch.ones_like(volumes))
            stress = gradients[-1] / volumes.view(-1, 1, 1)
            results["stress"] = stress * fully_periodic.view(-1, 1, 1)
        return results


class SumModel(ModelInterface):
    """The sum of torch-sim models: energies, forces and stresses added.

    For example long-range Coulomb (:class:`TorchPMEModel`) plus a short-range
    torch-sim model (soft spheres, Lennard-Jones, a machine-learning potential).

    Args:
        *models: torch-sim models of the same device and dtype. Forces (stress)
            are returned when every model computes them.

    Example:
        >>> import torch
        >>> from torchpme import CoulombPotential, EwaldCalculator
        >>> from torch_sim.models.lennard_jones import LennardJonesModel
        >>> calculator = EwaldCalculator(CoulombPotential(smearing=1.0),
        ...                              lr_wavelength=0.5).to(torch.float64)
        >>> model = SumModel(
        ...     TorchPMEModel(calculator, {11: 1.0, 17: -1.0}, cutoff=5.0),
        ...     LennardJonesModel(sigma=2.5, epsilon=0.1, cutoff=6.0,
        ...                       dtype=torch.float64),
        ... )
        >>> model.compute_forces, model.compute_stress
        (True, False)
    """

    def __init__(self, *models: ModelInterface):
        super().__init__()
        if not models:
            raise ValueError("SumModel needs at least one model")
        dtypes = {m.dtype for m in models}
        if len(dtypes) > 1:
            raise ValueError(f"the models have different dtypes: {dtypes}")
        self.models = torch.nn.ModuleList(models)
        self._device = torch.device(models[0].device)
        self._dtype = models[0].dtype
        self._compute_forces = all(m.compute_forces for m in models)
        self._compute_stress = all(m.compute_stress for m in models)

    def forward(self, state: SimState, **kwargs) -> Dict[str, torch.Tensor]:
        """The summed ``"energy"``, ``"forces"`` and ``"stress"`` of the models."""
        results: Dict[str, torch.Tensor] = {}
        keys = ["energy"]
        if self._compute_forces:
            keys.append("forces")
        if self._compute_stress:
            keys.append("stress")
        for model in self.models:
            output = model(state, **kwargs)
            for key in keys:
                value = output[key]
                results[key] = value if key not in results else results[key] + value
        return results
