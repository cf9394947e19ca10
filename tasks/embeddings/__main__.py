"""``python -m tasks.embeddings``: the command line of :mod:`.task`."""
import sys

from .task import main

sys.exit(main())
