"""Applications built on the voxseg library: the napari plugin (:mod:`voxseg.apps.napari`).

Nothing in the library imports this package; each app is a thin layer over the public API.
"""
