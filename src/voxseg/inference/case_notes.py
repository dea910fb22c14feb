"""Pre-flight warnings as data: one finding about one case, and many cases' findings as few lines.

A batch of 1,000 test tiles smaller than the training images gave 1,000 lines of the same field-of-
view warning; :func:`grouped_notes` gives one, with the count and the first few cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CaseNote", "grouped_notes", "GROUP_NOTES_ABOVE"]

#: Above this many cases with the same warning, one line names the first few and the count.
GROUP_NOTES_ABOVE = 3


@dataclass(frozen=True)
class CaseNote:
    """A pre-flight warning about one case: ``{subject}: {lead}{found}{tail}{detail}``.

    ``kind`` with ``lead`` and ``tail`` (the model's side) is the finding; ``found`` is this case's
    value and ``detail`` what follows for this case alone. Many cases with one finding become one
    line without the details (:attr:`voxseg.inference.preflight.PreflightReport.warnings`).
    """

    kind: str
    subject: str
    lead: str
    found: str
    tail: str = ""
    detail: str = ""
    case: str = ""  # the case's id where ``subject`` names one of its files

    @property
    def text(self) -> str:
        return f"{self.subject}: {self.lead}{self.found}{self.tail}{self.detail}"


def grouped_notes(notes: Sequence[CaseNote], total: int) -> list[str]:
    """One line per note, or per finding when over ``GROUP_NOTES_ABOVE`` cases share it."""
    groups: dict[tuple[str, str, str], list[CaseNote]] = {}
    for note in notes:
        groups.setdefault((note.kind, note.lead, note.tail), []).append(note)
    lines: list[str] = []
    for (_, lead, tail), members in groups.items():
        if len(members) <= GROUP_NOTES_ABOVE:
            lines.extend(dict.fromkeys(n.text for n in members))
            continue
        subjects = [n.subject for n in members]
        named = ", ".join(subjects[:GROUP_NOTES_ABOVE]) + ", ..."
        cases = len({n.case or n.subject for n in members})
        values = list(dict.fromkeys(n.found for n in members))
        found = ", ".join(values) if len(values) <= GROUP_NOTES_ABOVE else f"{values[0]}, ..., {values[-1]}"
        lines.append(f"{cases} of {total} cases ({named}): {lead}{found}{tail}")
    return lines
