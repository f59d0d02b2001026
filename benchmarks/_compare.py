"""Shared output of the benchmark scripts: comparison columns and JSON."""

import json


def comparison(ours: dict, other: dict) -> str:
    """Time and peak memory of another implementation, and the two ratios."""
    if "error" in other:
        return f" other failed: {other['error']}"
    return (
        f" {1e3 * other['time_s']:9.1f} {other['peak_growth_mb']:9.0f}"
        f" {other['time_s'] / ours['time_s']:8.2f}"
        f" {ours['peak_growth_mb'] / max(other['peak_growth_mb'], 1e-9):9.2f}"
    )


def write_json(path, rows: list) -> None:
    """Write the result rows to ``path`` when one was asked for."""
    if path:
        with open(path, "w") as handle:
            json.dump(rows, handle, indent=2)
