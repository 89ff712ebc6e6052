"""`python -m analysis` runs the `outcomes` command line."""

import sys

from analysis.cli import main

sys.exit(main())
