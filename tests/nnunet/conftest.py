"""Fixtures: pickles written the way nnU-Net writes ``postprocessing.pkl`` (without nnunetv2)."""

from __future__ import annotations

import sys
import types

import pytest

MODULE = "nnunetv2.postprocessing.remove_connected_components"
FUNCTION = "remove_all_but_largest_component_from_segmentation"


@pytest.fixture
def nnunet_pp(monkeypatch):
    """``labels -> (functions, kwargs)`` pickling nnU-Net's function by reference, as nnU-Net does.

    A stand-in module named like nnU-Net's is put in ``sys.modules`` so ``pickle`` writes the same
    ``GLOBAL`` reference nnU-Net's own file holds.
    """
    module = types.ModuleType(MODULE)

    def remove_all_but_largest_component_from_segmentation(segmentation, labels_or_regions, background_label=0):
        raise AssertionError("never called: voxseg does not unpickle postprocessing.pkl")

    remove_all_but_largest_component_from_segmentation.__module__ = MODULE
    remove_all_but_largest_component_from_segmentation.__qualname__ = FUNCTION
    setattr(module, FUNCTION, remove_all_but_largest_component_from_segmentation)
    for name in ("nnunetv2", "nnunetv2.postprocessing"):
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, MODULE, module)

    def make(labels):
        fn = getattr(module, FUNCTION)
        return [fn] * len(labels), [{"labels_or_regions": value} for value in labels]

    return make
