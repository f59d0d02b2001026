"""Which calls run the fused Triton kernels of :mod:`torchpme._core.triton_kernels`.

They serve tensors on a CUDA device (Triton's GPU target) in eager mode, CUDA graph
captures included: under ``torch.compile`` inductor fuses the PyTorch forms itself,
TorchScript cannot call them, and ``torch.func`` transforms wrap tensors that a
kernel cannot read; with ``torch.use_deterministic_algorithms(True)`` the PyTorch
forms run (the kernels add atomically, in any order). Without Triton (CPU builds
of PyTorch), or with a Triton older than :data:`MINIMUM_TRITON`, nothing changes.
``TORCHPME_TRITON=0`` in the environment, or
:data:`torchpme._core.defaults.TRITON` set to ``False``, turns them off.
"""

from types import ModuleType
from typing import Optional

import torch

from . import defaults
from .validation import _transformed, compiling

__all__ = ["DEVICE_TYPES", "MINIMUM_TRITON", "kernels_for"]

# where the kernels run; the tests add "cpu" to run them in Triton's interpreter
DEVICE_TYPES = ("cuda",)
_LOADED = []  # the imported module, or None if Triton cannot be imported


# a requirement, not a speed choice: the kernels call libdevice's erfc through
# ``triton.language.extra.libdevice``, which Triton has from 3.1 on
MINIMUM_TRITON = (3, 1)


def _module() -> Optional[ModuleType]:
    if not _LOADED:
        triton_kernels = None
        try:
            import triton

            version = tuple(int(part) for part in triton.__version__.split(".")[:2])
            if version >= MINIMUM_TRITON:
                from . import triton_kernels
        except (ImportError, ValueError):
            triton_kernels = None
        _LOADED.append(triton_kernels)
    return _LOADED[0]


@torch.jit.unused
def kernels_for(tensor: torch.Tensor) -> Optional[ModuleType]:
    """The kernel module if ``tensor``'s calls should use it, else None."""
    if not defaults.TRITON or tensor.device.type not in DEVICE_TYPES:
        return None
    if compiling() or _transformed(tensor):
        return None
    if torch.are_deterministic_algorithms_enabled():
        # atomic additions sum in any order; PyTorch's own forms then decide
        # (deterministic kernels, or an error where it has none)
        return None
    return _module()
