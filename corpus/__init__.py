"""Typed registry of corpus sources and recipes (the DeMix Corpora recipe and a demo recipe)."""

from __future__ import annotations

from corpus.atomic import atomic_write, write_json_atomic
from corpus.config_check import ConfigError, check_config, rules
from corpus.errors import DemixError, UsageError, run_cli
from corpus.recipe import (
    FORMATS,
    NAME_RULE,
    TIERS,
    Recipe,
    RecipeError,
    Source,
    Stage,
    TokenizerSpec,
    load_recipe,
    parse_recipe,
)
from corpus.tokens import TokenAmountError, format_tokens, parse_tokens

__all__ = [
    "ConfigError",
    "DemixError",
    "NAME_RULE",
    "TokenAmountError",
    "UsageError",
    "check_config",
    "rules",
    "run_cli",
    "FORMATS",
    "TIERS",
    "Recipe",
    "RecipeError",
    "Source",
    "Stage",
    "TokenizerSpec",
    "atomic_write",
    "format_tokens",
    "load_recipe",
    "parse_recipe",
    "parse_tokens",
    "write_json_atomic",
]
