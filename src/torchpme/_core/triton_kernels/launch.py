"""Launching a Triton kernel on the tensors' device (or in the interpreter)."""

import os

import torch
import triton

__all__ = ["INTERPRETED", "launch"]

# Triton's interpreter (CPU tests) has no libdevice: erfc is then 1 − erf, whose
# relative error grows in the tail (1e-11 at x = 3 in float64); compiled kernels
# call libdevice's erfc
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def launch(kernel, count: int, per_program: int, device: torch.device, *args, **meta):
    """``kernel`` over ``count`` items, ``per_program`` (its ``BLOCK``) to a program,
    on ``device``: Triton launches on the current CUDA device, which need not be
    the tensors'."""
    grid = (triton.cdiv(count, per_program),)
    if device.type == "cuda":
        with torch.cuda.device(device):
            kernel[grid](*args, BLOCK=per_program, **meta)
    else:  # the interpreter
        kernel[grid](*args, BLOCK=per_program, **meta)
