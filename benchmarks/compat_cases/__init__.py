"""The corpus of the differential compatibility check (``benchmarks/compat.py``).

Each case is a function of the imported ``torchpme`` module that makes one call (or a
short sequence of calls) of the torch-pme 0.5 API, the way users write it, and returns
what the call gave: tensors, numbers, or tuples, lists and dicts of them. The driver
runs every case in two interpreters and compares the outcomes; a case that raises is
compared by its exception type.

Register a case with :func:`case`. ``differs`` names a deliberate difference (stricter
validation, a more accurate number): the driver then reports the comparison apart,
with the reason, instead of counting it as a failure. ``within`` bounds a deliberate
difference of numbers: values further apart than that relative tolerance still fail.
"""

import dataclasses
from typing import Callable, Optional

CASES: dict = {}


@dataclasses.dataclass(frozen=True)
class Case:
    """One call of the corpus and how to compare its outcome."""

    name: str
    run: Callable
    rtol: float
    atol: float
    differs: Optional[str]
    within: Optional[float]


def case(
    rtol: float = 1e-10,
    atol: float = 1e-12,
    differs: Optional[str] = None,
    within: Optional[float] = None,
):
    """Register the decorated function as a case named after it."""

    def register(function):
        name = f"{function.__module__.rsplit('.', 1)[-1]}.{function.__name__}"
        if name in CASES:
            raise ValueError(f"two compatibility cases are named {name}")
        CASES[name] = Case(name, function, rtol, atol, differs, within)
        return function

    return register


#: corpus modules that failed to import, with the error
BROKEN: dict = {}


def load_all() -> dict:
    """Import every corpus module, which registers its cases, and return them (a
    module that fails to import is listed in :data:`BROKEN` instead)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            try:
                importlib.import_module(f"{__name__}.{module.name}")
            except Exception as error:  # reported by the driver
                BROKEN[module.name] = f"{type(error).__name__}: {error}"
    return CASES
