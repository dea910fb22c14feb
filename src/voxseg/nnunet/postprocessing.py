"""Read nnU-Net's ``postprocessing.pkl`` without unpickling it, and translate it to voxseg's spec.

nnU-Net writes ``(functions, kwargs)``: a list of postprocessing functions (pickled by name) and a
list of keyword dicts. The file is *never* unpickled: :func:`read_postprocessing_pkl` walks its
opcodes with :mod:`pickletools` and rebuilds only lists, tuples, dicts, numbers, strings and
references to the known function ``remove_all_but_largest_component_from_segmentation``. Any other
opcode (object construction, calls) or function is refused with a message naming it.
"""

from __future__ import annotations

import pickletools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.errors import BundleError
from voxseg.postprocessing import PostprocessingSpec, Step

__all__ = ["read_postprocessing_pkl", "translate_postprocessing", "KNOWN_FUNCTIONS"]

KNOWN_FUNCTIONS = {
    ("nnunetv2.postprocessing.remove_connected_components", "remove_all_but_largest_component_from_segmentation"),
}

_MARK = object()


@dataclass(frozen=True)
class Function:
    """A reference to a pickled function (never resolved)."""

    module: str
    name: str


_PUSH_ARG = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
    "BININT",
    "BININT1",
    "BININT2",
    "INT",
    "LONG",
    "LONG1",
    "LONG4",
    "BINFLOAT",
    "FLOAT",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _pop_mark(stack: list[Any]) -> list[Any]:
    for k in range(len(stack) - 1, -1, -1):
        if stack[k] is _MARK:
            items = stack[k + 1 :]
            del stack[k:]
            return items
    raise ValueError("MARK missing")


def _global(module: str, name: str, where: str) -> Function:
    if (module, name) not in KNOWN_FUNCTIONS:
        raise BundleError(
            f"{where}: refused: postprocessing function {module}.{name} is not one voxseg knows "
            "(remove_all_but_largest_component_from_segmentation); use --postprocessing none to import without it"
        )
    return Function(module, name)


def _step(op: str, arg: Any, stack: list[Any], memo: dict[int, Any], where: str) -> bool:
    """Apply one opcode; False for STOP."""
    if op in _PUSH_ARG:
        stack.append(arg)
    elif op in _CONSTANTS:
        stack.append(_CONSTANTS[op])
    elif op in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE"):
        stack.append({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_TUPLE": ()}[op])
    elif op == "MARK":
        stack.append(_MARK)
    elif op in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
        memo[len(memo) if op == "MEMOIZE" else int(arg)] = stack[-1]
    elif op in ("BINGET", "LONG_BINGET", "GET"):
        stack.append(memo[int(arg)])
    elif op in ("APPEND", "APPENDS"):
        items = [stack.pop()] if op == "APPEND" else _pop_mark(stack)
        stack[-1].extend(items)
    elif op in ("SETITEM", "SETITEMS"):
        items = stack[-2:] if op == "SETITEM" else _pop_mark(stack)
        if op == "SETITEM":
            del stack[-2:]
        for key, value in zip(items[::2], items[1::2], strict=True):
            stack[-1][key] = value
    elif op in ("TUPLE", "LIST", "DICT"):
        items = _pop_mark(stack)
        stack.append(
            tuple(items)
            if op == "TUPLE"
            else items
            if op == "LIST"
            else dict(zip(items[::2], items[1::2], strict=True))
        )
    elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(op[-1])
        items = stack[-n:]
        del stack[-n:]
        stack.append(tuple(items))
    elif op == "STACK_GLOBAL":
        name, module = stack.pop(), stack.pop()
        stack.append(_global(str(module), str(name), where))
    elif op == "GLOBAL":
        module, name = str(arg).split(" ", 1)
        stack.append(_global(module, name, where))
    elif op == "STOP":
        return False
    elif op == "POP":
        stack.pop()
    elif op not in ("PROTO", "FRAME"):
        raise BundleError(f"{where}: refused: pickle opcode {op} (object construction) is not allowed here")
    return True


def read_postprocessing_pkl(path: str | Path) -> tuple[list[Function], list[dict[str, Any]]]:
    """``(functions, kwargs)`` of an nnU-Net ``postprocessing.pkl``, parsed without unpickling.

    Raises
    ------
    BundleError
        Unreadable file, an opcode that constructs objects, or an unknown function.
    """
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from None
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if not _step(opcode.name, arg, stack, memo, where):
                break
    except BundleError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}: not a valid postprocessing.pkl ({type(exc).__name__}: {exc})") from None
    result = stack[-1] if stack else None
    ok = isinstance(result, (tuple, list)) and len(result) == 2 and all(isinstance(x, list) for x in result)
    if not ok or len(result[0]) != len(result[1]) or not all(isinstance(k, Mapping) for k in result[1]):
        raise BundleError(f"{path}: expected nnU-Net's (functions, kwargs) lists, found {type(result).__name__}")
    return list(result[0]), [dict(k) for k in result[1]]


def translate_postprocessing(
    functions: list[Function],
    kwargs: list[dict[str, Any]],
    *,
    foreground: tuple[int, ...],
    ndim: int = 3,
    where: str = "",
) -> PostprocessingSpec:
    """nnU-Net's postprocessing as a voxseg :class:`PostprocessingSpec`.

    ``remove_all_but_largest_component_from_segmentation(labels_or_regions=c)`` becomes
    ``keep_largest`` of class ``c`` (26/8-connectivity, as nnU-Net's ``skimage.measure.label``).
    A list of classes means "largest component of their union"; it translates exactly when it
    names one class (the usual binary model); for several classes it is refused.
    """
    classes: dict[int, list[Step]] = {}
    for fn, kw in zip(functions, kwargs, strict=True):
        unknown = sorted(set(kw) - {"labels_or_regions", "background_label"})
        if unknown or int(kw.get("background_label", 0)) != 0:
            raise BundleError(f"{where}: refused: {fn.name} with arguments {kw} (voxseg translates labels_or_regions)")
        target = kw.get("labels_or_regions")
        values = [int(v) for v in target] if isinstance(target, (list, tuple)) else [int(target)]
        if len(values) != 1:
            raise BundleError(
                f"{where}: refused: keep-largest over the union of classes {values} has no voxseg equivalent yet; "
                "use --postprocessing none to import without it"
            )
        if values[0] not in foreground:
            raise BundleError(f"{where}: postprocessing names class {values[0]}, not one of the model's {foreground}")
        classes.setdefault(values[0], []).append(Step.of("keep_largest", connectivity=26 if ndim == 3 else 8))
    return PostprocessingSpec(classes={k: tuple(v) for k, v in sorted(classes.items())})
