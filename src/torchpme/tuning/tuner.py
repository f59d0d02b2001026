"""The machinery shared by the tuners: what accuracy means, how parameters are
chosen.

This module is the public face of that machinery; each part lives in a room of
its own: :mod:`~torchpme.tuning._validation` (checks of the inputs, before any
work), :mod:`~torchpme.tuning._base` (:class:`TuningErrorBounds`,
:class:`TunerBase` and the smearing), :mod:`~torchpme.tuning._search` (the grid
search, :class:`GridSearchTuner`, :data:`SAFETY`),
:mod:`~torchpme.tuning._timing` (:class:`TuningTimings`) and
:mod:`~torchpme.tuning._cutoff` (:func:`tune_cutoff`).

**What "accuracy" means.** Every tuner takes ``accuracy``, a target for the RMS
error of the forces over the atoms,

.. math::

    ΔF = \\Big( \\frac{1}{N} Σ_i |F_i − F_i^\\text{exact}|^2 \\Big)^{1/2},
    \\qquad F_i = −∂E/∂r_i,\\quad E = Σ_i q_i V_i,

as in Kolafa & Perram (1992), doi:10.1080/08927029208049126: Gaussian units with
a unit prefactor, i.e. charge²/length² (e²/Å² for charges in e and lengths in
Å); the potential's ``prefactor`` (e.g. :data:`torchpme.prefactors.eV_A`)
multiplies the actual error. It is the error of the whole calculation,
real-space truncation at the cutoff plus the reciprocal-space approximation,
measured against the exact sum: 3-D periodic, or for a slab (``periodic`` with
one non-periodic direction) the 3-D sum with the Yeh–Berkowitz correction the
calculators add; with ``tune_pme``/``tune_p3m(..., periodic=...)`` the 0-, 1-
or 2-periodic sum itself (clusters, wires, exact slabs;
:mod:`torchpme.tuning._open`). The RMS error of the per-atom potentials ``V_i`` (charge/length)
is held to the same number; it rarely decides (in the tests, lengths in Å, it is
3–40 % of the force error), except for very few atoms, whose forces may vanish
by symmetry while their energy still needs the reciprocal-space sum.

**How parameters are chosen.** The smearing follows from the cutoff
(:meth:`TunerBase.estimate_smearing`: Kolafa–Perram real-space error
``accuracy/2``); each candidate of the reciprocal-space grid gets an estimate of
the total error; candidates that cannot win (above the accuracy, or needing at
least as much of every resource as another accepted one: k-vectors; mesh points
and interpolation nodes) are dropped before anything is timed; of the rest, the
cheapest few by a rough cost model are timed and the fastest is returned.

**Which error formulas.** The compatible error-bound classes
(:class:`~torchpme.tuning.ewald.EwaldErrorBounds`,
:class:`~torchpme.tuning.pme.PMEErrorBounds`,
:class:`~torchpme.tuning.p3m.P3MErrorBounds`) reproduce torch-pme 0.5's numbers,
but they are optimistic for these calculators: Ewald keeps k-vectors up to about
``π/λ``, not the ``2π/λ`` its formula assumes (measured errors exceed it by
orders of magnitude); forces by automatic differentiation of the mesh
interpolation converge one order slower than the PME formula assumes, and every
mesh method adds a self-force (measured errors up to ~60× the PME bound and
~20× the P3M bound). The tuners select with ``EwaldErrorEstimate``,
``PMEErrorEstimate`` and ``P3MErrorEstimate`` instead: the random-charge RMS
errors (forces and potentials) of each pipeline as implemented (:mod:`torchpme.tuning._estimates`),
which matches measured errors within about 30 % for disordered systems (and
overestimates them for crystals), multiplied by the safety factor
:data:`SAFETY`. The Kolafa–Perram real-space term assumes a uniform pair
density; for a crystal with a coordination shell at the cutoff it underestimates
(by 1.7× on rattled rock salt with the cutoff at its second shell, the worst
cutoff in a scan of 3–6 Å), which the factor 2 of ``accuracy/2`` absorbs. Over
Ewald, PME and P3M, accuracies 1e-2 … 1e-6 and the systems of
``tests/test_tuning_accuracy.py``, measured force errors are 0.3–0.96 of the
accuracy (0.96: that rock-salt case) and potential errors at most 0.33 of it.

**Slabs and clusters.** Every estimate assumes the atoms spread over the whole
cell; with vacuum each atom's partners are denser than ``N/V`` and the errors
larger (the real-space force error is 1.8× the Kolafa–Perram value on a slab of
64 ions filling 8 Å of a 36 Å cell; PME tuned with the cell volume for 1e-3
measures 1.02e-3 there). The
smearing and the estimates therefore use the density of the occupied region
wherever the density enters (pair terms, not self terms), found from the largest
empty gap along each lattice vector (:mod:`torchpme.tuning._density`); bulk
systems are unaffected. On that slab and on a cluster in vacuum
(``tests/test_tuning_slab.py``) measured force errors are then about 0.5–0.65 of
the accuracy.
"""

from ._base import TunerBase, TuningErrorBounds
from ._cutoff import tune_cutoff
from ._search import SAFETY, GridSearchTuner, pareto_front  # noqa: F401
from ._timing import TuningTimings

__all__ = [
    "SAFETY",
    "GridSearchTuner",
    "TunerBase",
    "TuningErrorBounds",
    "TuningTimings",
    "tune_cutoff",
]
