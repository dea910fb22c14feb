"""What dataset checks report: a :class:`Problem` (where, what, how bad), and the channel file naming rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Problem", "CHANNEL_RE"]

#: ``CASE_0000``: a channel file's stem (nnU-Net's naming).
CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset: where it is, what is wrong (and how to fix it)."""

    path: Path
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"
