"""The voxseg napari plugin (npe2 manifest ``napari.yaml``).

Contributions: a reader and writers for NIfTI/NRRD/MHA/TIFF through :mod:`voxseg.io` (spacing
becomes the layer's ``scale``, origin its ``translate``), one sample-data entry per phantom, and
the widgets "Segment" (:class:`~voxseg.apps.napari.segment.SegmentWidget`) and "Objects"
(:class:`~voxseg.apps.napari.objects.ObjectsWidget`). Install with ``pip install "voxseg[napari]"``;
see ``docs/napari.md``.

Importing this package imports neither napari nor Qt; the widget modules do.
"""
