"""`python -m triglot` runs the command line (used by torchrun and sbatch scripts)."""

from triglot.cli import run

run()
