"""Launching triglot stages: torchrun on one machine, generated sbatch scripts on Slurm, sweeps as job arrays.

`launch.commands` adds `triglot launch local|slurm`, `triglot sweep` and `triglot jobs` to the command line.
"""
