"""augbench's Hydra plugins: the skip_completed sweeper and the SLURM launcher (Hydra loads plugins only from the ``hydra_plugins`` namespace)."""
