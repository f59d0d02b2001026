"""How densely an atom's partners are packed: the vacuum of slabs and clusters.

The random-charge estimates (:mod:`torchpme.tuning._estimates`) average each
pair error ``|e(r_i − r_j)|²`` over partners ``j`` spread uniformly over the
cell, at the number density ``N/V``. A slab or a cluster in vacuum leaves part
of the cell empty, and an atom's partners are denser than that: the pair terms
grow by the factor this module estimates (self terms, an atom with itself and
its own images, do not depend on where the other atoms are).

**Occupied thickness.** Along each lattice vector ``a_d`` the fractional
coordinates ``s_d`` of the atoms, wrapped into ``[0, 1)``, leave circular gaps
between them. A bulk system (crystal or liquid) has many gaps of about the same
size; a slab has one that stands out. The vacuum is the excess of the largest gap
over the second largest (which pads the occupied region by one typical gap and
makes a crystal's equal interplanar gaps count as none), and the occupied
thickness is ``t_d = (1 − vacuum_d) h_d``, with ``h_d = V/|a_e × a_f|`` the height
of the cell across the planes of the other two vectors.

**Density factor.** A pair error of reach ``R`` (a spherical shell of radius
``R`` around each atom) sees, for atoms uniformly spread over a layer of
thickness ``t``, the fraction ``φ = 1 − R/(2t)`` of the shell inside the layer
(``t/(2R)`` for ``t < R``: a thin layer is seen edge-on). The density seen is
then ``(N/V)(h/t)φ``, and per lattice vector the factor is

.. math::

    D_d(R) = \\max\\Big(1,\\ \\frac{h_d}{t_d}\\Big(1 − \\frac{R}{2t_d}\\Big)\\Big)
    \\quad (t_d ≥ R), \\qquad \\max\\Big(1, \\frac{h_d}{2R}\\Big) \\quad (t_d < R),

multiplied over the three vectors: ``D = Π_d D_d``, i.e. an effective volume
``V/D ≤ V``. A vacuum narrower than about ``R`` leaves the factor at 1, so bulk
systems are unchanged. The product treats each direction as an infinite layer;
for a cluster thinner than ``R`` in several directions it overestimates the
density (the estimate errs on the safe side), and a single atom has no partners
(factor 1).

**Reaches.** The Kolafa–Perram real-space terms come from pairs just beyond the
cutoff: ``R = r_c``, exact for a planar layer. The k-space pair errors of Ewald,
PME and P3M are smooth kernels of the smearing's scale; ``R = 2σ`` is taken
(:data:`KSPACE_REACH`). On a slab of 64 ions in 8 Å of a 36 Å cell the measured
enhancement of the k-space pair terms (PME, σ = 1.5 Å, 3 nodes) is about 3.2,
against 3.5 for ``R = 2σ``: on the safe side; at the cutoff a direct count of
the partners gives 2.9, as the formula (``tests/test_tuning_slab.py``).
"""

from typing import Tuple

import numpy as np

__all__ = ["KSPACE_REACH", "density_factor", "layer_thicknesses"]

#: Reach of the k-space pair errors in smearings (see the module docstring).
KSPACE_REACH = 2.0


def layer_thicknesses(
    cell: np.ndarray, positions: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Cell heights ``h_d`` and occupied thicknesses ``t_d`` across each lattice
    vector (``t_d = h_d`` without vacuum; ``h_d`` for a single atom).

    Costs one sort per lattice vector, ``O(N log N)``.

    Args:
        cell: ``(3, 3)`` cell, rows are lattice vectors.
        positions: ``(N, 3)`` Cartesian positions.

    Returns:
        ``(heights, thicknesses)``, two ``(3,)`` arrays.
    """
    cell = np.asarray(cell, dtype=float)
    inverse = np.linalg.inv(cell)
    heights = 1.0 / np.linalg.norm(inverse, axis=0)
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(positions) < 2:
        return heights, heights.copy()
    fractional = positions @ inverse
    fractional = np.sort(fractional - np.floor(fractional), axis=0)
    gaps = np.diff(fractional, axis=0, append=fractional[:1] + 1.0)
    two_largest = np.sort(gaps, axis=0)[-2:]
    vacuum = np.clip(two_largest[1] - two_largest[0], 0.0, 1.0)
    return heights, (1.0 - vacuum) * heights


def density_factor(heights: np.ndarray, thicknesses: np.ndarray, reach: float) -> float:
    """Factor ``D ≥ 1`` on the density of partners that a pair error of reach
    ``reach`` sees, for the layers of :func:`layer_thicknesses` (formula in the
    module docstring); 1 for a homogeneous system."""
    factor = 1.0
    for h, t in zip(heights, thicknesses):
        if t >= reach:
            seen = h / t * (1.0 - reach / (2.0 * t))
        else:
            seen = h / (2.0 * reach)
        factor *= max(1.0, float(seen))
    return factor
