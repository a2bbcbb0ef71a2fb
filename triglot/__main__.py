"""`python -m triglot` runs the command line (used by torchrun and sbatch scripts)."""

import sys

from triglot.cli import main

sys.exit(main())
