"""The I/O layer stays light: importing it never pulls in torch."""

from __future__ import annotations

import subprocess
import sys

import voxseg.io


def test_import_voxseg_and_io_does_not_import_torch():
    code = (
        "import sys, voxseg, voxseg.io\n"
        "voxseg.read_image, voxseg.Volume\n"  # the lazy public names resolve without torch too
        "import voxseg.io.dicom_io, voxseg.io.png_io, voxseg.io.sitk_io, voxseg.io.tiff_io\n"
        "heavy = sorted(m for m in ('torch', 'monai') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_public_api():
    assert set(voxseg.io.__all__) == {
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
    }
    for name in voxseg.io.__all__:
        assert getattr(voxseg.io, name) is not None
