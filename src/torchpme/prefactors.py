"""Unit prefactors for potentials computed in Gaussian units.

The library computes potentials with ``1/(4πε₀) = 1``, charges in elementary
charges and lengths in the unit of the input. Passing one of these constants as a
potential's ``prefactor`` converts the results:

.. math::

    \\mathrm{SI} = \\frac{e^2}{4π ε_0} \\;[\\mathrm{J\\,m}], \\qquad
    \\mathrm{eV\\_A} = \\frac{e}{4π ε_0 \\cdot 10^{-10}\\,\\mathrm{m}} \\;[\\mathrm{eV\\,Å}],

.. math::

    \\mathrm{kcalmol\\_A} = \\mathrm{eV\\_A} \\cdot \\frac{e N_A}{4184}, \\qquad
    \\mathrm{kJmol} = \\mathrm{eV\\_A} \\cdot \\frac{e N_A}{1000}

with the CODATA 2018 values ``e = 1.602176634e-19 C`` and
``N_A = 6.02214076e23 /mol`` (both exact since the 2019 SI),
``ε₀ = 8.8541878128e-12 F/m``, the thermochemical calorie (4.184 J) and
``1 eV = e J``. ``kcalmol_A`` and ``kJmol`` expect lengths in Å (``kJmol`` keeps
its historical name).

Example:
    >>> from torchpme import CoulombPotential
    >>> potential = CoulombPotential(prefactor=eV_A)  # energies in eV, lengths in Å
"""

__all__ = ["SI", "eV_A", "kJmol", "kcalmol_A"]

SI = 2.3070775523417355e-28
"""``e²/(4πε₀)`` in J·m (charges in e, lengths in m)."""

eV_A = 14.399645478425667
"""``e²/(4πε₀)`` in eV·Å (charges in e, lengths in Å)."""

kcalmol_A = 332.0637132991921
"""``e²/(4πε₀)`` in kcal/mol·Å (charges in e, lengths in Å)."""

kJmol = 1389.3545764438197
"""``e²/(4πε₀)`` in kJ/mol·Å (charges in e, lengths in Å)."""
