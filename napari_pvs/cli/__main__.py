"""``python -m napari_pvs.cli``: the ``napari-pvs`` command."""

import sys

from .main import main

sys.exit(main())
