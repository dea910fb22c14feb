"""``python -m voxseg`` = the ``voxseg`` command."""

from voxseg.cli.main import entry_point

entry_point()
