"""Typed registry of corpus sources and recipes (the DeMix Corpora recipe and a demo recipe)."""
from __future__ import annotations

from corpus.errors import DemixError, UsageError, run_cli
from corpus.recipe import (
    FORMATS,
    TIERS,
    Recipe,
    RecipeError,
    Source,
    Stage,
    TokenizerSpec,
    load_recipe,
    parse_recipe,
)
from corpus.tokens import format_tokens, parse_tokens

__all__ = [
    "DemixError", "UsageError", "run_cli", "FORMATS", "TIERS", "Recipe", "RecipeError", "Source", "Stage", "TokenizerSpec",
    "format_tokens", "load_recipe", "parse_recipe", "parse_tokens",
]
