"""``python -m tasks.pretrained``: the command line of :mod:`.shipped`."""
import sys

from .shipped import main

sys.exit(main())
