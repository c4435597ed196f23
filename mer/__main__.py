"""`python -m mer <command>`: dataset tools beside the two experiment scripts."""

import sys

from mer.cli import main

sys.exit(main())
