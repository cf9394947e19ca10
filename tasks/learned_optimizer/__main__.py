"""``python -m tasks.learned_optimizer``: the command line of :mod:`.task`."""
import sys

from .task import main

sys.exit(main())
