"""Image I/O: :class:`Volume` (array + geometry in one axis order) and readers/writers by suffix."""

from voxseg.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from voxseg.io.formats import (
    READ_SUFFIXES,
    WRITE_SUFFIXES,
    image_suffix,
    is_image_file,
    read_channels,
    read_image,
    write_image,
)
from voxseg.io.volume import Geometry, Volume, require_same_grid

__all__ = [
    "Volume",
    "Geometry",
    "require_same_grid",
    "read_image",
    "read_channels",
    "write_image",
    "image_suffix",
    "is_image_file",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "atomic_path",
    "write_json_atomic",
    "write_text_atomic",
]
