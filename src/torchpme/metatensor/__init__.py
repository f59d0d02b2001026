"""Bindings for `metatensor <https://docs.metatensor.org>`_ and metatomic (optional).

The calculators here take a :class:`metatomic.torch.System` (with a ``"charge"``
data entry) and a neighbour list :class:`metatensor.torch.TensorBlock`, and return
the per-atom potentials as a :class:`metatensor.torch.TensorMap`. Install the
extra with ``pip install "torchpme[metatensor]"`` (metatensor-torch and
metatomic-torch).
"""

try:
    import metatensor.torch
    import metatomic.torch
except ImportError as error:
    raise ImportError(
        "torchpme.metatensor needs metatensor-torch and metatomic-torch: "
        "pip install metatensor-torch metatomic-torch "
        f'(or pip install "torchpme[metatensor]"); import failed with: {error}'
    ) from error

from .calculator import Calculator
from .ewald import EwaldCalculator
from .p3m import P3MCalculator
from .pme import PMECalculator

__all__ = ["Calculator", "EwaldCalculator", "P3MCalculator", "PMECalculator"]
