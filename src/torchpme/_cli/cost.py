"""A cost model of one energy + forces step, for ``method="auto"``.

Both periodic methods share the real-space pair sum (same cutoff), so ``auto``
compares only their reciprocal-space work, counted from the structure, the
cutoff ``r_c`` and the accuracy ``ε`` (tuner units, e²/Å²) before any tuning:

* the smearing the tuners pick for a real-space error ``ε`` is close to
  ``σ = r_c / √(2 ln(1/ε))``;
* Ewald sums over the k-vectors of a half sphere of radius
  ``k_c ≈ 1.85 √(2 ln(1/ε)) / σ`` (the wavelength the Ewald tuner picks), that
  is ``K = V k_c³ / (12π²)`` vectors, each touching every atom:
  ``t_Ewald = C_KVECTOR · N · K``;
* P3M transforms a mesh of spacing ``h ≈ 0.3 σ (ε / 7·10⁻⁶)^(1/7)`` (the
  P3M tuner's choice with 5 interpolation nodes, finer for tighter ``ε``) with
  the mesh size of :func:`torchpme.lib.get_ns_mesh`, and spreads and gathers
  ``p³ = 125`` points per atom:
  ``t_P3M = C_MESH_POINT · M + C_STENCIL · 125 N + C_MESH_FIXED``.

The constants are seconds per unit of work, fitted once to energy + forces
steps with tuned parameters in float64 on one CPU thread (rock salt, 8–1000
ions, ε = 7e-6 and 7e-8). Their ratios, not their values, decide. For rock
salt at ε = 7e-6 (1e-4 eV/Å) the model picks Ewald for 8 ions and P3M from 64
on; at ε = 7e-8, where P3M needs much finer meshes, Ewald up to 512.
"""

import math
from typing import Sequence

import torch

__all__ = ["ewald_cost", "mesh_points", "p3m_cost"]

#: seconds per (atom × k-vector): phases, structure factor and forces
C_KVECTOR = 1.5e-7
#: seconds per mesh point: forward and backward FFTs and the filter
C_MESH_POINT = 1.2e-7
#: seconds per (atom × stencil point): spreading and gathering
C_STENCIL = 1.0e-7
#: seconds per P3M step independent of size (mesh set-up, kernel launches)
C_MESH_FIXED = 2.0e-3


def _smearing(cutoff: float, accuracy: float) -> float:
    return cutoff / math.sqrt(2.0 * math.log(1.0 / min(accuracy, 0.1)))


def ewald_cost(n_atoms: int, volume: float, cutoff: float, accuracy: float) -> float:
    """Modelled seconds of Ewald's reciprocal-space part (see the module)."""
    logarithm = math.log(1.0 / min(accuracy, 0.1))
    k_cut = 1.85 * math.sqrt(2.0 * logarithm) / _smearing(cutoff, accuracy)
    vectors = volume * k_cut**3 / (12.0 * math.pi**2)
    return C_KVECTOR * n_atoms * vectors


def mesh_points(lengths: Sequence[float], cutoff: float, accuracy: float) -> int:
    """Modelled P3M mesh size for cell vectors of these ``lengths``."""
    from ..lib import get_ns_mesh

    ratio = min(accuracy, 0.1) / 7e-6
    spacing = 0.3 * _smearing(cutoff, accuracy) * ratio ** (1.0 / 7.0)
    cell = torch.diag(torch.tensor(list(lengths), dtype=torch.float64))
    return int(get_ns_mesh(cell, spacing).prod())


def p3m_cost(
    n_atoms: int, lengths: Sequence[float], cutoff: float, accuracy: float
) -> float:
    """Modelled seconds of P3M's reciprocal-space part (see the module)."""
    points = mesh_points(lengths, cutoff, accuracy)
    return C_MESH_POINT * points + C_STENCIL * 125 * n_atoms + C_MESH_FIXED
