"""``python -m nnbasics.train``: the training app, ``nnbasics/train/app.py`` (``main`` at its end)."""
import sys

from .app import main

sys.exit(main())
