"""The work folder (``voxseg plan DATA -o WORK``): its layout (:class:`WorkDir`) and the records in it.

Only paths and small JSON status reads: every floor that reads a work folder (inference's
``Predictor.from_work``, bundle export, experiment) imports it from here, below them all.
"""

from voxseg.workdir.layout import WorkDir

__all__ = ["WorkDir"]
