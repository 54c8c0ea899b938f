"""`python -m capacity` is the `capacity` command."""

import sys

from capacity.cli import main

sys.exit(main())
