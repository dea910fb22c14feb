"""The installed voxseg version, importable without the package's lazy public API (``voxseg.__init__``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voxseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
