"""The examples in the docstrings of the public classes run and print what they say.

Each example states an independent number (a Madelung constant, a dipole-dipole
energy written out by hand), so running them checks the library, not only the text.
"""

import doctest

import pytest

import torchpme._core.pairlist
import torchpme.calculators._batch
import torchpme.calculators.calculator
import torchpme.calculators.calculator_dipole
import torchpme.calculators.ewald
import torchpme.calculators.p3m
import torchpme.calculators.pme
import torchpme.distributed.calculator
import torchpme.gaussian
import torchpme.lib.mesh_interpolator
import torchpme.multipoles
import torchpme.neighbors
import torchpme.polarisation
import torchpme.probes
import torchpme.qeq

MODULES = [
    torchpme.calculators._batch,
    torchpme.calculators.calculator,
    torchpme.calculators.calculator_dipole,
    torchpme.calculators.ewald,
    torchpme.calculators.pme,
    torchpme.calculators.p3m,
    torchpme.lib.mesh_interpolator,
    torchpme.neighbors,
    torchpme.probes,
    torchpme.gaussian,
    torchpme.qeq,
    torchpme.multipoles,
    torchpme.polarisation,
    torchpme._core.pairlist,
    torchpme.distributed.calculator,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
