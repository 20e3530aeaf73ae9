"""`python -m mixer` runs the mixer CLI."""

from __future__ import annotations

import sys

from mixer.cli import main

sys.exit(main())
