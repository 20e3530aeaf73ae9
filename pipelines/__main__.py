"""`python -m pipelines` = `build-corpus`."""

from __future__ import annotations

import sys

from pipelines.build_corpus import main

sys.exit(main())
