"""`python -m atlas.cli`: what `accelerate launch -m atlas.cli <stage>` runs in each process."""

import sys

from atlas.cli.main import main

sys.exit(main())
