"""Version of the package (API-compatible with torch-pme 0.5)."""

__version__ = "0.5.0"
__version_tuple__ = (0, 5, 0)
