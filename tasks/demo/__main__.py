"""``python -m tasks.demo``: the command line of :mod:`.demo`."""
import sys

from .demo import main

sys.exit(main())
