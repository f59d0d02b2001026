"""Metatensor binding of the base :class:`torchpme.calculators.Calculator`."""

from typing import List

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import System

from .. import calculators
from .._core.validation import message

__all__ = ["Calculator"]


class Calculator(torch.nn.Module):
    """Per-atom potentials of a metatomic ``System`` as a metatensor ``TensorMap``.

    Wraps a torch calculator (``_base_calculator``, here the direct
    :class:`torchpme.calculators.Calculator`) built from the same constructor
    arguments. :meth:`forward` reads

    * the charges ``q`` from ``system.get_data("charge")``: one block, values
      ``(N, C)``, no components;
    * the neighbour list from a metatomic neighbour block: samples
      ``first_atom, second_atom, cell_shift_a, cell_shift_b, cell_shift_c``, one
      ``xyz`` component, property ``distance``; values are pair vectors
      ``r_j − r_i + S A`` of shape ``(P, 3, 1)``, whose norms are the distances
      ``r_ij`` (gradients flow through them);

    and returns ``V_i = ½ Σ_j q_j v(r_ij)`` (plus the reciprocal-space part for
    the Ewald/PME/P3M subclasses), so that ``E = Σ_i q_i V_i``.

    Periodicity: metatomic stores a zero cell vector along every non-periodic
    axis, so reciprocal-space calculators (a smeared potential) need a system
    periodic along all three axes and raise ``ValueError`` otherwise (torch-pme
    0.5 silently ignored ``system.pbc``). The direct calculator (no smearing)
    takes any ``pbc``.

    Args:
        *args: positional arguments of the wrapped torch calculator.
        **kwargs: keyword arguments of the wrapped torch calculator.
    """

    _base_calculator = calculators.Calculator

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._calculator = self._base_calculator(*args, **kwargs)

    @staticmethod
    def _validate_compute_parameters(system: System, neighbors: TensorBlock) -> None:
        """Check the neighbour block and the charge data of ``system``."""
        positions = system.positions
        # a local list: TorchScript reads no module-level lists
        sample_names = [
            "first_atom",
            "second_atom",
            "cell_shift_a",
            "cell_shift_b",
            "cell_shift_c",
        ]
        if neighbors.values.dtype != positions.dtype:
            raise ValueError(
                message(
                    "neighbors",
                    f"values of the dtype of the system positions ({positions.dtype})",
                    f"{neighbors.values.dtype}",
                )
            )
        if neighbors.values.device != positions.device:
            raise ValueError(
                message(
                    "neighbors",
                    f"values on the device of the positions ({positions.device})",
                    f"{neighbors.values.device}",
                )
            )
        if neighbors.samples.names != sample_names:
            raise ValueError(
                message(
                    "neighbors",
                    f"sample names {sample_names}",
                    f"{neighbors.samples.names}",
                )
            )
        xyz = Labels(
            "xyz",
            torch.tensor([[0], [1], [2]], dtype=torch.int32, device=positions.device),
        )
        components = neighbors.components
        if len(components) != 1 or components[0] != xyz:
            raise ValueError(
                message(
                    "neighbors",
                    "one component Labels('xyz', [[0], [1], [2]])",
                    f"{len(components)} component(s)",
                )
            )
        distance = Labels(
            "distance", torch.tensor([[0]], dtype=torch.int32, device=positions.device)
        )
        if neighbors.properties != distance:
            raise ValueError(
                message(
                    "neighbors",
                    "properties Labels('distance', [[0]])",
                    f"properties {neighbors.properties.names}",
                )
            )
        if "charge" not in system.known_data():
            raise ValueError(
                message(
                    "system",
                    "'charge' data (system.add_data('charge', ...))",
                    f"data {system.known_data()}",
                )
            )
        charges = system.get_data("charge")
        if len(charges) != 1:
            raise ValueError(
                message(
                    "charge", "a TensorMap with one block", f"{len(charges)} blocks"
                )
            )
        if len(charges.block().components) != 0:
            raise ValueError(
                message(
                    "charge",
                    "a block without components",
                    f"{len(charges.block().components)} component(s)",
                )
            )

    def forward(self, system: System, neighbors: TensorBlock) -> TensorMap:
        """Per-atom potentials of ``system``.

        Args:
            system: positions ``(N, 3)``, cell ``(3, 3)``, pbc and ``"charge"`` data
                ``(N, C)``.
            neighbors: neighbour-list block (see the class docstring).

        Returns:
            ``TensorMap`` with one block: values ``(N, C)``, samples
            ``("system", "atom")``, properties ``"charges_channel"``.
        """
        self._validate_compute_parameters(system, neighbors)
        if self._calculator.potential.smearing is not None:
            if not bool(system.pbc.all()):
                raise ValueError(
                    message(
                        "system",
                        "periodic along all three axes for a reciprocal-space "
                        "calculator",
                        f"pbc {system.pbc}",
                    )
                )
        charges = system.get_data("charge").block().values
        samples = neighbors.samples.values
        neighbor_indices = samples[:, 0:2]
        if neighbor_indices.device.type == "cpu":
            neighbor_indices = neighbor_indices.to(torch.int64).contiguous()
        neighbor_distances = torch.linalg.norm(neighbors.values, dim=1).squeeze(-1)
        potential = self._calculator.forward(
            charges,
            system.cell,
            system.positions,
            neighbor_indices,
            neighbor_distances,
        )
        n_atoms = potential.shape[0]
        device = potential.device
        atoms = torch.arange(n_atoms, dtype=torch.int32, device=device)
        sample_values = torch.stack([torch.zeros_like(atoms), atoms], dim=1)
        channels: List[int] = list(range(potential.shape[1]))
        block = TensorBlock(
            values=potential,
            samples=Labels(["system", "atom"], sample_values),
            components=[],
            properties=Labels(
                "charges_channel",
                torch.tensor(channels, dtype=torch.int32, device=device).reshape(-1, 1),
            ),
        )
        keys = Labels("_", torch.zeros(1, 1, dtype=torch.int32, device=device))
        return TensorMap(keys=keys, blocks=[block])
