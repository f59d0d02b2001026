"""Registration helpers shared by the table-driven corpus modules (``lib``,
``potentials``): many short cases, each a function of the imported ``torchpme``."""

import torch

from . import case


def as_tensor(values, dtype=torch.float64):
    """A float64 (or ``dtype``) tensor of ``values``."""
    return torch.tensor(values, dtype=dtype)


def register(module, name, run, **options):
    """Register ``run`` as the case ``module.name`` (see :func:`case`)."""
    run.__name__ = name
    run.__module__ = module
    case(**options)(run)


def table(module, calls, **options):
    """Register one case per entry of ``calls``, named by its key, that runs
    ``call(torchpme)``."""
    for name, call in calls.items():
        register(module, name, lambda torchpme, call=call: call(torchpme), **options)


def forms(module, prefix, values, call, **options):
    """Cases calling ``call(torchpme, value)`` with each argument form of ``values``
    (name → function making the value): ``prefix_forms`` collects the results of the
    valid forms in a dict; each form named ``bad_*`` is a case of its own."""
    good = {form: make for form, make in values.items() if not form.startswith("bad_")}
    calls = {f"{prefix}_forms": lambda t: {f: call(t, m()) for f, m in good.items()}}
    for form, make in values.items():
        if form.startswith("bad_"):
            calls[f"{prefix}_{form}"] = lambda t, m=make: call(t, m())
    table(module, calls, **options)


def deliberate(module, entries):
    """Register deliberate differences: name → ``(call, reason)`` or
    ``(call, reason, within)`` (see :func:`case`)."""
    for name, (call, reason, *within) in entries.items():
        table(
            module, {name: call}, differs=reason, within=within[0] if within else None
        )
