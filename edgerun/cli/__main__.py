"""``python -m edgerun.cli ...``: the same command line as the ``edgerun`` script.

``edgerun bench --target`` runs this on a device (edgerun/targets/bench.py), where the console
script may not be on PATH.
"""

import sys

from edgerun.cli import main

sys.exit(main())
