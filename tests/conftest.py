"""Shared pytest configuration.

Hypothesis profiles (choose with the environment variable ``HYPOTHESIS_PROFILE``):

* ``torchpme`` (default): a few examples per property, to keep the suite fast;
* ``slow``: many more examples, for a nightly or pre-release run, e.g.
  ``HYPOTHESIS_PROFILE=slow pytest tests/test_properties.py``.

No example database is written (the examples are printed on failure, with the
seed to reproduce them).
"""

import os

import torch
from hypothesis import HealthCheck, settings

# Triton, where installed, interprets its kernels when no GPU can compile them: the
# fused-kernel tests (test_triton_kernels.py) then run on the CPU. It reads this
# when it is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile(
    "torchpme",
    max_examples=5,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "slow",
    max_examples=60,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "torchpme"))
