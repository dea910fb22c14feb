"""A pooch downloader that resumes: what arrived is kept in a ``.part`` file and continued with an
HTTP ``Range`` request on the next attempt (a retry, or the next ``voxseg install``).

pooch's own :class:`pooch.HTTPDownloader` starts over after a dropped connection, which is how the
seeds' users lose large downloads on flaky networks. pooch still does the rest: it calls this
downloader with a temporary file next to the cache entry, checks the sha256 of what the downloader
put there, and moves it into the cache only when the hash matches (a mismatch deletes it, and with
it the partial download, so a bad file is never resumed twice). HTTP is done by ``requests``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["ResumableDownloader", "IncompleteDownload"]

log = logging.getLogger(__name__)


class IncompleteDownload(OSError):
    """The connection ended before the announced number of bytes arrived (the part is kept)."""


class ResumableDownloader:
    """``downloader(url, output_file, pooch)`` for :func:`pooch.retrieve`, resuming from ``part``.

    Parameters
    ----------
    part
        Where the bytes received so far are kept (``CACHE/downloads/NAME.zip.part``).
    size
        Expected size in bytes from the index, or None; a part larger than it is discarded.
    progress
        ``progress(done, total)`` after each chunk (``total`` 0 when the server does not say).
    timeout
        Seconds to wait for the server to connect or send the next bytes.
    """

    chunk_size = 1 << 16

    def __init__(
        self,
        part: Path,
        *,
        size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        timeout: float = 60,
    ):
        self.part, self.size, self.progress, self.timeout = Path(part), size, progress, timeout
        self.resumed_from = 0

    def _have(self) -> int:
        have = self.part.stat().st_size if self.part.is_file() else 0
        if self.size is not None and have > self.size:
            log.info("%s: larger than the expected %d bytes; starting over", self.part, self.size)
            self.part.unlink()
            return 0
        return have

    def __call__(self, url: str, output_file: str, pooch: object = None, check_only: bool = False) -> bool | None:
        import requests

        if check_only:
            with requests.head(url, timeout=self.timeout, allow_redirects=True) as r:
                return r.ok
        self.part.parent.mkdir(parents=True, exist_ok=True)
        have = self._have()
        complete = self.size is not None and have == self.size
        if not complete:
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
            with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
                if have and r.status_code == 416:  # nothing left to send: the part is the whole file
                    complete = True
                else:
                    r.raise_for_status()
                    if have and r.status_code != 206:  # the server ignored the range: start over
                        log.info("%s does not resume downloads; starting over", url)
                        have = 0
                    self.resumed_from = have
                    self._receive(r, have)
        os.replace(self.part, output_file)  # pooch hashes it, then keeps or deletes it
        return None

    def _receive(self, response, have: int) -> None:
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else (self.size or 0)
        done = have
        # read the raw stream without urllib3's length check, which drops the bytes of the last read
        # when the connection breaks; the length is checked below, after everything received is saved
        response.raw.enforce_content_length = False
        with open(self.part, "ab" if have else "wb") as f:
            try:
                for chunk in response.raw.stream(self.chunk_size, decode_content=False):
                    f.write(chunk)
                    done += len(chunk)
                    if self.progress is not None:
                        self.progress(min(done, total) if total else done, total)
            finally:
                f.flush()
                os.fsync(f.fileno())
        if total and done < total:
            raise IncompleteDownload(f"connection closed after {done} of {total} bytes (kept; resumed next time)")
