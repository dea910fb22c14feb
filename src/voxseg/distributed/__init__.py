"""Scale-out on existing engines: cohort inference on Ray, data-parallel training with PyTorch DDP.

Nothing here is a home-made cluster: :mod:`.ray_engine` runs the local batch engine's per-case
function in Ray actors, :mod:`.ddp` runs the ordinary training loop in ``torch.distributed``
processes (``torchrun`` or local spawn). Import the submodules; this package imports neither
ray nor torch.
"""

__all__: list[str] = []
