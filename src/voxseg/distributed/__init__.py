"""Scale-out on an existing engine: cohort inference on Ray.

Nothing here is a home-made cluster: :mod:`.ray_engine` runs the local batch engine's per-case
function in Ray actors. (Data-parallel training lives with training: the DDP steps in
:mod:`voxseg.training.parallel`, the process launcher in :mod:`voxseg.experiment.launcher`.)
Import the submodule; this package imports no ray.
"""

__all__: list[str] = []
