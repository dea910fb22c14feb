"""Uploaded files -> Volumes: type and size checks, safe zip extraction, voxseg's readers.

An upload is written to a private temporary folder under a fixed name (``upload.nii.gz``, ...),
so the user's file name never becomes a path, and read with :func:`voxseg.io.read_channels`.
A zip is taken to hold one DICOM series: it is extracted member by member after checking every
name (no absolute paths, no ``..``, no links: zip-slip) and counting the bytes really written
against a cap (zip bombs). Every failure is an :class:`~voxseg.errors.InputImageError` naming the
uploaded file, so the app can show one line and stay usable. No Streamlit and no torch here.
"""

from __future__ import annotations

import logging
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from voxseg.errors import InputImageError, VoxsegError
from voxseg.io import Volume, read_channels

__all__ = [
    "UPLOAD_KINDS",
    "UploadedImage",
    "upload_kind",
    "check_upload",
    "read_upload",
    "extract_zip_safely",
    "dicom_folder",
]

log = logging.getLogger(__name__)

#: Accepted suffixes (lower-case, longest first) and the kind of input they are.
UPLOAD_KINDS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".mha": "mha",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".png": "png",
    ".zip": "dicom",
}
_MAX_ZIP_MEMBERS = 20_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadedImage:
    """An uploaded image, read.

    Attributes
    ----------
    name
        The file name the user uploaded (for messages and download names only).
    kind
        ``nifti``, ``nrrd``, ``mha``, ``tiff``, ``png`` or ``dicom`` (a zip of a DICOM series).
    suffix
        The uploaded suffix (``.nii.gz``, ``.tif``, ``.zip``...).
    channels
        One Volume per image channel, on one grid.
    """

    name: str
    kind: str
    suffix: str
    channels: tuple[Volume, ...]

    @property
    def image(self) -> Volume:
        """The first channel (the one shown)."""
        return self.channels[0]

    @property
    def ndim(self) -> int:
        return self.image.ndim

    @property
    def stem(self) -> str:
        """The file name without its suffix, reduced to safe characters (for download names)."""
        base = self.name[: -len(self.suffix)] if self.name.lower().endswith(self.suffix) else self.name
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in PurePosixPath(base).name)
        return safe.strip("._") or "image"


def upload_kind(name: str) -> tuple[str, str] | None:
    """``(suffix, kind)`` for a file name voxseg's web app accepts, else None."""
    lower = name.lower()
    for suffix, kind in UPLOAD_KINDS.items():
        if lower.endswith(suffix):
            return suffix, kind
    return None


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n < (1 << 30) else f"{n / (1 << 30):.2f} GB"


def check_upload(name: str, size: int, *, max_bytes: int) -> tuple[str, str]:
    """Check an upload's name and size before reading it; return ``(suffix, kind)``.

    Raises
    ------
    InputImageError
        Unsupported type, empty file, or larger than ``max_bytes``.
    """
    found = upload_kind(name)
    if found is None:
        accepted = ", ".join(sorted(UPLOAD_KINDS))
        raise InputImageError(name, "unsupported file type", f"upload one of {accepted} (zip: a DICOM series)")
    if size <= 0:
        raise InputImageError(name, "file is empty (0 bytes)", "upload it again")
    if size > max_bytes:
        raise InputImageError(
            name,
            f"file is {_mb(size)}, more than the upload limit of {_mb(max_bytes)}",
            "crop or downsample the image, or start the app with a larger --max-upload-mb",
        )
    return found


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system == 3 and kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "is a link or special file"
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute or Windows path"
    if ".." in name.split("/"):
        return "escapes the archive folder ('..' in its path)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _skipped(name: str) -> bool:
    """Archive clutter that is not part of the series (macOS resource forks, hidden files)."""
    parts = PurePosixPath(name).parts
    return not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def extract_zip_safely(path: Path, target: Path, *, max_total_bytes: int, label: str | None = None) -> list[Path]:
    """Extract the regular files of a zip into ``target``; return their paths.

    Member names are checked first (absolute paths, ``..``, backslashes, links, encryption: the
    whole archive is refused), then bytes are counted while writing, so an archive that lies about
    its sizes still stops at ``max_total_bytes``. ``label`` names the archive in messages.
    """
    where = label or str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        fix = "upload a .zip of one DICOM series"
        raise InputImageError(where, f"not a readable zip archive ({exc})", fix) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_ZIP_MEMBERS:
            raise InputImageError(where, f"archive has {len(infos)} members (limit {_MAX_ZIP_MEMBERS})")
        for info in infos:
            problem = _member_problem(info)
            if problem:
                fix = "zip the series folder again"
                raise InputImageError(where, f"archive member {info.filename!r} {problem}", fix)
        root = target.resolve()
        written, files = 0, []
        for info in infos:
            if info.is_dir() or _skipped(info.filename):
                continue
            out = (root / info.filename).resolve()
            if root not in out.parents:  # belt and braces after the name checks
                raise InputImageError(where, f"archive member {info.filename!r} escapes the archive folder")
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, out.open("xb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise InputImageError(
                                where,
                                f"archive unpacks to more than {_mb(max_total_bytes)}",
                                "upload a smaller series (or raise --max-upload-mb)",
                            )
                        dst.write(chunk)
            except FileExistsError:
                raise InputImageError(where, f"archive holds {info.filename!r} twice") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise InputImageError(where, f"archive member {info.filename!r} is unreadable ({exc})") from None
            files.append(out)
    if not files:
        raise InputImageError(where, "archive holds no files", "zip the folder of .dcm files of one series")
    return files


def dicom_folder(files: list[Path], *, label: str) -> Path:
    """The folder holding the series: the one with the most extracted files."""
    counts: dict[Path, int] = {}
    for f in files:
        counts[f.parent] = counts.get(f.parent, 0) + 1
    folders = sorted(counts, key=lambda p: (-counts[p], str(p)))
    if len(folders) > 1 and counts[folders[0]] == counts[folders[1]]:
        log.info("%s: several folders with %d files; reading %s", label, counts[folders[0]], folders[0])
    return folders[0]


def _one_series(root: Path, *, label: str) -> tuple[Path, str]:
    """The one image series under ``root`` (any subfolder, files with or without .dcm): (folder, uid)."""
    from voxseg.io.dicom_scan import find_series

    found = find_series(root)
    usable = [s for s in found if s.problem is None]
    if len(usable) == 1:
        return usable[0].folder, usable[0].uid
    if not usable:
        why = "; ".join(f"{s.label()}: {s.problem}" for s in found[:3])
        raise InputImageError(
            label, f"archive holds no readable DICOM image series{f' ({why})' if why else ''}", "zip one series"
        )
    listed = ", ".join(s.label() for s in usable[:4])
    raise InputImageError(label, f"archive holds {len(usable)} DICOM series ({listed})", "zip one series per upload")


def _scrub(text: str, folder: Path, name: str) -> str:
    """``text`` with the private temporary paths replaced by the uploaded file's name."""
    for path in sorted({str(folder.resolve()), str(folder)}, key=len, reverse=True):
        text = re.sub(re.escape(path) + r"[^\s'\")]*", name, text)
    return text


def read_upload(name: str, data: bytes, folder: str | Path, *, max_bytes: int) -> UploadedImage:
    """Check, store and read an uploaded file.

    Parameters
    ----------
    name
        The uploaded file name (decides the format; never used as a path).
    data
        The file's bytes.
    folder
        A private temporary folder for this upload (created; its content is replaced).
    max_bytes
        Upload limit; a zip may unpack to at most four times this.

    Raises
    ------
    InputImageError
        Unsupported, oversized, empty, corrupt or unsafe file, naming ``name``.
    """
    suffix, kind = check_upload(name, len(data), max_bytes=max_bytes)
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    try:
        if kind == "dicom":
            extract_zip_safely(path, folder / "series", max_total_bytes=4 * max_bytes, label=name)
            path.unlink()
            source, uid = _one_series(folder / "series", label=name)
        else:
            source, uid = path, None
        channels = read_channels(source, series_uid=uid)
    except InputImageError as exc:
        fix = None if exc.fix is None else _scrub(exc.fix, folder, name)
        raise InputImageError(name, _scrub(exc.problem, folder, name), fix) from None
    except VoxsegError:
        raise
    except Exception as exc:  # a reader's unexpected failure on a corrupt file: still the file's fault
        first = _scrub(" ".join(str(exc).split())[:200], folder, name) or type(exc).__name__
        raise InputImageError(name, f"cannot read the file ({first})", "check that the file is complete") from None
    return UploadedImage(name, kind, suffix, tuple(channels))
