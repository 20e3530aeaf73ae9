"""Fixtures of the pipeline tests: one small build shared by the read-only tests."""

from __future__ import annotations

import pytest
from pipeline_inputs import make_inputs, run_build, write_recipe


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> dict:
    """One small build shared by the read-only tests: {'root', 'out', 'recipe', 'summary'}."""
    root = tmp_path_factory.mktemp("small")
    recipe = write_recipe(root, make_inputs(root))
    out = root / "out"
    summary = run_build(recipe, out)
    return {"root": root, "out": out, "recipe": recipe, "summary": summary}
