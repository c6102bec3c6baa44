"""`python -m agent.cli ...`: the `aegis` command."""

import sys

from agent.cli import main

sys.exit(main())
