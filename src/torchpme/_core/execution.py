"""How a call executes: the one rule every hot loop of ``_core`` follows.

The same functions run eagerly, under TorchScript, under ``torch.compile``, under
``torch.func`` transforms and with Triton kernels. Each hot loop asks this module
(and, in TorchScript, ``torch.jit.is_scripting()`` at the branch itself, the only
form the TorchScript compiler evaluates) which form to run:

==========================================  ============================================
situation                                   what runs
==========================================  ============================================
TorchScript (``torch.jit.is_scripting()``)  the composed differentiable PyTorch forms
                                            (autograd Functions cannot be scripted)
traced: ``torch.compile`` is tracing, or    the PyTorch forms, no host reads, loops in
the tensor is wrapped by a ``torch.func``   one chunk (:func:`traced`); inductor fuses
transform (``vmap``, ``grad``)              them
CUDA tensor in eager mode, Triton ≥ 3.1,    the fused Triton kernels of
``defaults.TRITON`` (``TORCHPME_TRITON``),  :mod:`torchpme._core.triton_kernels`
not deterministic algorithms                (:func:`kernels_for`)
otherwise (eager, CPU or other devices)     the hand-written autograd Functions, loops
                                            in chunks of :mod:`~torchpme._core.defaults`
                                            on CPU (:func:`chunk_length`)
one CPU mesh of at least                    scipy's transforms with all threads
``defaults.HOST_FFT_MIN_POINTS`` points,    (:func:`host_fft_for`)
eager, inside a Function, scipy installed
inside a backward pass with gradients on    the Function replays its forward as
(second derivatives)                        differentiable operations
                                            (:func:`torchpme._core.backward.replay`)
==========================================  ============================================

The Triton kernels add atomically, in any order, so with
``torch.use_deterministic_algorithms(True)`` PyTorch's own forms decide
(deterministic kernels, or an error where it has none).
"""

import functools
from types import ModuleType
from typing import Optional, Tuple

import torch

from . import defaults

__all__ = [
    "DEVICE_TYPES",
    "MINIMUM_TRITON",
    "chunk_length",
    "compiling",
    "host_fft_for",
    "kernels_for",
    "traced",
    "transformed",
]

# where the kernels run; the tests add "cpu" to run them in Triton's interpreter
DEVICE_TYPES = ("cuda",)
_LOADED = []  # the imported module, or None if Triton cannot be imported

# a requirement, not a speed choice: the kernels call libdevice's erfc through
# ``triton.language.extra.libdevice``, which Triton has from 3.1 on
MINIMUM_TRITON = (3, 1)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing."""
    compiler = getattr(torch, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


@torch.jit.unused
def transformed(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is wrapped by a ``torch.func`` transform (``vmap``,
    ``grad``), where its values cannot be read on the host."""
    functorch = getattr(torch._C, "_functorch", None)
    level = getattr(functorch, "maybe_get_level", None)
    return level is not None and int(level(tensor)) != -1


@torch.jit.unused
def traced(tensor: torch.Tensor) -> bool:
    """Whether calls on ``tensor`` are traced (``torch.compile``) or transformed
    (``torch.func``): then the PyTorch forms run and nothing is read on the host."""
    return compiling() or transformed(tensor)


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
    """The Triton kernel module if calls on ``tensor`` should use it, else None."""
    if not defaults.TRITON or tensor.device.type not in DEVICE_TYPES:
        return None
    if traced(tensor) or torch.are_deterministic_algorithms_enabled():
        return None
    return _module()


def chunk_length(chunk: int, total: int, device: torch.device) -> int:
    """Items per step of a loop over ``total`` items: ``chunk`` on CPU, all of them
    elsewhere and while ``torch.compile`` traces.

    On CPU a chunk's temporaries stay in cache and the allocator reuses them
    (fresh buffers above its mmap threshold cost page faults). A caching device
    allocator has no faults to avoid, and every chunk would cost its own kernel
    launches. A traced loop is unrolled into the graph, which then grows with
    the number of chunks and compiles to slower code.
    """
    if device.type != "cpu" or compiling():
        return max(1, total)
    return max(1, chunk)


@functools.lru_cache(maxsize=1)
def _scipy_fft() -> Optional[ModuleType]:
    try:
        import scipy.fft
    except ImportError:
        return None
    return scipy.fft


def host_fft_for(
    data: torch.Tensor, sizes: Tuple[int, int, int]
) -> Optional[ModuleType]:
    """``scipy.fft`` if one ``sizes`` mesh (or its spectrum) ``data``, outside
    autograd, goes through scipy's transforms (from
    :data:`~torchpme._core.defaults.HOST_FFT_MIN_POINTS` points on), else None."""
    if data.device.type != "cpu" or data.dim() > 4 or data.shape[0] != 1:
        return None
    if sizes[0] * sizes[1] * sizes[2] < defaults.HOST_FFT_MIN_POINTS:
        return None
    if compiling():
        return None
    return _scipy_fft()
