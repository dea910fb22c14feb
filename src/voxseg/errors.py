"""Errors raised by voxseg.

Every error a user can cause derives from :class:`VoxsegError`. Messages are one line that says
what is wrong, where (the file), and how to fix it. The CLI prints ``str(error)`` and exits 1.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "VoxsegError",
    "InputImageError",
    "OutputPathError",
    "DiskFullError",
    "GeometryError",
    "DatasetFormatError",
    "BundleError",
    "ConfigError",
    "JSONFileError",
    "UnknownNameError",
]


class VoxsegError(Exception):
    """Base class of every error a user can cause (bad input, missing model, bad option)."""


class InputImageError(VoxsegError):
    """An image file cannot be used: missing, corrupt, wrong shape, unsupported dtype, ...

    Parameters
    ----------
    path
        The file (or folder, for a DICOM series) at fault.
    problem
        What is wrong, as a short phrase.
    fix
        Optional advice on how to fix it.
    channel, mask
        Which input of a case it is about, as data (for an error raised about an array, before the
        caller knows the file): the image channel's index, or the mask.
    """

    def __init__(
        self,
        path: str | Path | None,
        problem: str,
        fix: str | None = None,
        *,
        channel: int | None = None,
        mask: bool = False,
    ):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        self.channel = channel
        self.mask = mask
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)

    def naming(self, path: str | Path) -> InputImageError:
        """The same problem and fix, about ``path`` (for an error raised about an array or a temporary file)."""
        return type(self)(path, self.problem, self.fix, channel=self.channel, mask=self.mask)

    def about(self, *, channel: int | None = None, mask: bool = False) -> InputImageError:
        """The same error, saying which input of the case it is about (see ``channel``, ``mask``)."""
        return type(self)(self.path, self.problem, self.fix, channel=channel, mask=mask)


class OutputPathError(InputImageError):
    """An output cannot be written where asked: it is an input, lies in an input folder, or would
    replace a file voxseg did not write. Raised before anything is written."""


class DiskFullError(InputImageError):
    """The disk (or quota) filled up while writing an output; nothing partial is left."""


class GeometryError(InputImageError, ValueError):
    """A voxel spacing (or other geometry) that cannot be physical: zero, negative, NaN, infinite
    or absurd. A ``ValueError`` too, for callers that passed a bad ``spacing=`` to the API."""


class DatasetFormatError(VoxsegError):
    """A dataset folder does not follow the expected layout (dataset.json, imagesTr, ...)."""


class BundleError(VoxsegError):
    """A model bundle is missing, corrupt, or fails its checksum."""


class ConfigError(VoxsegError):
    """An option or configuration value is invalid."""


class JSONFileError(ConfigError, ValueError):
    """A JSON file that is too large, nested too deep, not UTF-8 or not JSON (see
    :mod:`voxseg.io.safe_json`); a ``ValueError`` too, like the ``json`` module's own errors."""


class UnknownNameError(VoxsegError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
