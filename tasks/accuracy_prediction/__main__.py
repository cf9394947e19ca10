"""``python -m tasks.accuracy_prediction``: the command line of :mod:`.task`."""
import sys

from .task import main

sys.exit(main())
