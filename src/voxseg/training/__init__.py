"""Training: losses with an ignore label, pickle-free checkpoints, (soon) the loop and k-fold runner."""
