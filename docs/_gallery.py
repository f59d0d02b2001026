"""Hooks of the gallery build (imported by name from ``conf.py``)."""

import torch


def reset_torch(gallery_conf, fname, when=None):
    """Give each example torch's defaults (some set float64 as the default dtype)."""
    torch.set_default_dtype(torch.float32)
