"""Typed recipes: sources (where, domain, tier, format, filters), tokenizer, stages; validated at load.

Every validation error names the file, the key path and the bad value, e.g.
``corpus/recipes/demo.yaml: sources[2].tier: 'hgh' is not one of high, medium-high, medium, low``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from corpus.tokens import parse_tokens
from corpus.errors import DemixError

TIERS = ("high", "medium-high", "medium", "low")
FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "text", "dist-metadata", "builtin")
FILTER_SETS = ("general", "code", "math", "none")
BUILTIN_GENERATORS = ("math",)
RECIPES_DIR = Path(__file__).parent / "recipes"


class RecipeError(DemixError, ValueError):
    """A recipe that cannot be used; the message names file, key path and value."""


@dataclass(frozen=True)
class TokenizerSpec:
    """Where the tokenizer comes from: a local tokenizer.json, a Hub id, or BPE trained on the recipe."""

    path: str | None = None
    hub: str | None = None
    train_vocab_size: int | None = None
    train_sample_docs: int = 20_000
    eos_token: str = "<|endoftext|>"
    name: str | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path:
            return Path(self.path).name
        if self.hub:
            return self.hub
        return f"bpe-{self.train_vocab_size}"


@dataclass(frozen=True)
class Stage:
    """A pre-training stage and its total token target."""

    name: str
    target_tokens: int


@dataclass(frozen=True)
class Source:
    """One dataset of a recipe: where it lives, what it is, how it is filtered."""

    name: str
    domain: str
    tier: str
    locations: tuple[str, ...]
    format: str
    text_field: str = "text"
    id_field: str | None = None
    license: str = "unknown"
    filters: str = "none"
    candidate: str | None = None
    available_tokens: int | None = None
    weight: float | None = None
    stages: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    title: str | None = None

    @property
    def buildable_offline(self) -> bool:
        return all(not re.match(r"^[a-z0-9]+://", loc) or loc.startswith("file://") for loc in self.locations)


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    minhash: bool = True
    num_buckets: int = 20
    hashes_per_bucket: int = 13
    ngram: int = 5
    threshold: float = 0.9


@dataclass(frozen=True)
class DecontaminationConfig:
    enabled: bool = True
    ngram: int = 13
    humaneval: bool = True
    extra_paths: tuple[str, ...] = ()
    text_field: str = "text"


@dataclass(frozen=True)
class LanguageConfig:
    """Optional fastText language id; never downloads: model_path must be a local file."""

    model_path: str | None = None
    languages: tuple[str, ...] = ("en",)
    threshold: float = 0.65


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: sources, tokenizer, stages and the shared pipeline settings."""

    name: str
    path: str
    sources: tuple[Source, ...]
    tokenizer: TokenizerSpec
    stages: tuple[Stage, ...] = ()
    description: str = ""
    validation_fraction: float = 0.005
    dedup: DedupConfig = DedupConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    language: LanguageConfig = LanguageConfig()

    def source(self, name: str) -> Source:
        """Return the source called ``name``; raises KeyError naming the known sources."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"{self.path}: no source {name!r}; sources are {', '.join(s.name for s in self.sources)}")

    def stage(self, name: str) -> Stage:
        """Return the stage called ``name``; raises KeyError naming the known stages."""
        for s in self.stages:
            if s.name == str(name):
                return s
        raise KeyError(f"{self.path}: no stage {name!r}; stages are {', '.join(s.name for s in self.stages) or 'none'}")

    def config_hash(self) -> str:
        """Stable hash of everything that changes what the pipeline writes (hex, 16 chars)."""
        payload = asdict(self)
        payload.pop("path")
        payload.pop("description")
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


class _Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, key: str, message: str) -> None:
        raise RecipeError(f"{self.file}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        for k in value:
            if k not in allowed:
                self.fail(f"{key}.{k}" if key else str(k), f"unknown key; allowed keys are {', '.join(allowed)}")
        for k in required:
            if k not in value or value[k] is None:
                self.fail(f"{key}.{k}" if key else k, "is required")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def tokens(self, value: Any, key: str) -> int:
        try:
            return parse_tokens(value)
        except ValueError as e:
            self.fail(key, str(e))
        raise AssertionError  # unreachable

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.fail(key, f"expected a number in [{lo}, {hi}], got {value!r}")
        return float(value)

    def integer(self, value: Any, key: str, lo: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.fail(key, f"expected an integer >= {lo}, got {value!r}")
        return value


_SOURCE_KEYS = (
    "name", "domain", "tier", "location", "locations", "format", "text_field", "id_field", "license",
    "filters", "candidate", "available_tokens", "weight", "stages", "params", "language", "title",
)


def _infer_format(location: str) -> str | None:
    for suffix, fmt in ((".jsonl.gz", "jsonl.gz"), (".jsonl.zst", "jsonl.zst"), (".jsonl", "jsonl"),
                        (".json.gz", "jsonl.gz"), (".parquet", "parquet"), (".txt", "text"), (".py", "text")):
        if location.endswith(suffix):
            return fmt
    if location.startswith("builtin:"):
        return "builtin"
    return None


def _source(c: _Checker, raw: Any, key: str, recipe_dir: Path, stage_names: set[str]) -> Source:
    c.mapping(raw, key, _SOURCE_KEYS, required=("name", "domain", "tier"))
    name = c.string(raw["name"], f"{key}.name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        c.fail(f"{key}.name", f"{name!r} must use letters, digits, '_', '.', '-' (it names folders)")
    domain = c.string(raw["domain"], f"{key}.domain")
    tier = c.choice(raw["tier"], f"{key}.tier", TIERS)
    if "location" in raw and "locations" in raw:
        c.fail(f"{key}.location", "give either location or locations, not both")
    locs = raw.get("locations", raw.get("location"))
    if locs is None:
        c.fail(f"{key}.location", "is required")
    locs = [locs] if isinstance(locs, str) else locs
    if not isinstance(locs, list) or not locs:
        c.fail(f"{key}.locations", f"expected a string or a non-empty list, got {locs!r}")
    expanded = []
    for i, loc in enumerate(locs):
        c.string(loc, f"{key}.locations[{i}]")
        try:
            expanded.append(expand_location(loc, recipe_dir))
        except KeyError as e:
            c.fail(f"{key}.locations[{i}]", f"unknown placeholder ${{{e.args[0]}}} in {loc!r}")
    fmt = raw.get("format") or _infer_format(expanded[0])
    if fmt is None:
        c.fail(f"{key}.format", f"cannot infer the format of {expanded[0]!r}; set one of {', '.join(FORMATS)}")
    c.choice(fmt, f"{key}.format", FORMATS)
    if fmt == "builtin":
        for i, loc in enumerate(expanded):
            gen = loc.removeprefix("builtin:")
            if not loc.startswith("builtin:") or gen not in BUILTIN_GENERATORS:
                c.fail(f"{key}.locations[{i}]", f"{loc!r} is not one of {', '.join('builtin:' + g for g in BUILTIN_GENERATORS)}")
    filters = raw.get("filters", domain if domain in FILTER_SETS else "none")
    c.choice(filters, f"{key}.filters", FILTER_SETS)
    stages: dict[str, int] = {}
    raw_stages = raw.get("stages") or {}
    if not isinstance(raw_stages, dict):
        c.fail(f"{key}.stages", f"expected a mapping of stage name to tokens, got {raw_stages!r}")
    for sname, amount in raw_stages.items():
        if str(sname) not in stage_names:
            c.fail(f"{key}.stages.{sname}", f"unknown stage; stages are {', '.join(sorted(stage_names)) or 'none'}")
        stages[str(sname)] = c.tokens(amount, f"{key}.stages.{sname}")
    available = raw.get("available_tokens")
    weight = raw.get("weight")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        c.fail(f"{key}.params", f"expected a mapping, got {params!r}")
    candidate = raw.get("candidate", f"{domain}_{tier.replace('-', '_')}")
    if candidate is not None:
        c.string(candidate, f"{key}.candidate")
    return Source(
        name=name,
        domain=domain,
        tier=tier,
        locations=tuple(expanded),
        format=fmt,
        text_field=c.string(raw.get("text_field", "text"), f"{key}.text_field"),
        id_field=None if raw.get("id_field") is None else c.string(raw["id_field"], f"{key}.id_field"),
        license=c.string(str(raw.get("license", "unknown")), f"{key}.license"),
        filters=filters,
        candidate=candidate,
        available_tokens=None if available is None else c.tokens(available, f"{key}.available_tokens"),
        weight=None if weight is None else c.number(weight, f"{key}.weight", 0.0, float("inf")),
        stages=stages,
        params=dict(params),
        language=raw.get("language"),
        title=raw.get("title"),
    )


def _tokenizer(c: _Checker, raw: Any, recipe_dir: Path) -> TokenizerSpec:
    c.mapping(raw, "tokenizer", ("path", "hub", "train", "eos_token", "name"))
    given = [k for k in ("path", "hub", "train") if raw.get(k) is not None]
    if len(given) != 1:
        c.fail("tokenizer", f"give exactly one of path, hub, train (got {', '.join(given) or 'none'})")
    eos = c.string(raw.get("eos_token", "<|endoftext|>"), "tokenizer.eos_token")
    name = raw.get("name")
    if "train" in given:
        t = c.mapping(raw["train"], "tokenizer.train", ("vocab_size", "sample_docs"), required=("vocab_size",))
        return TokenizerSpec(
            train_vocab_size=c.integer(t["vocab_size"], "tokenizer.train.vocab_size", 259),
            train_sample_docs=c.integer(t.get("sample_docs", 20_000), "tokenizer.train.sample_docs"),
            eos_token=eos, name=name,
        )
    if "path" in given:
        path = expand_location(c.string(raw["path"], "tokenizer.path"), recipe_dir)
        if not Path(path).is_absolute():
            path = str((recipe_dir / path).resolve())
        return TokenizerSpec(path=path, eos_token=eos, name=name)
    return TokenizerSpec(hub=c.string(raw["hub"], "tokenizer.hub"), eos_token=eos, name=name)


def parse_recipe(data: Any, file: str = "<recipe>", recipe_dir: Path | None = None) -> Recipe:
    """Validate a parsed YAML mapping into a Recipe; raises RecipeError naming file, key and value."""
    c = _Checker(file)
    recipe_dir = recipe_dir or Path(".")
    c.mapping(data, "", ("name", "description", "tokenizer", "stages", "sources", "validation_fraction",
                         "dedup", "decontamination", "language"), required=("name", "sources", "tokenizer"))
    stages = []
    for i, st in enumerate(data.get("stages") or []):
        c.mapping(st, f"stages[{i}]", ("name", "target"), required=("name", "target"))
        stages.append(Stage(name=str(st["name"]), target_tokens=c.tokens(st["target"], f"stages[{i}].target")))
    stage_names = {s.name for s in stages}
    if len(stage_names) != len(stages):
        c.fail("stages", "stage names must be unique")
    if not isinstance(data["sources"], list) or not data["sources"]:
        c.fail("sources", "expected a non-empty list of sources")
    sources = [_source(c, raw, f"sources[{i}]", recipe_dir, stage_names) for i, raw in enumerate(data["sources"])]
    seen: dict[str, int] = {}
    for i, s in enumerate(sources):
        if s.name in seen:
            c.fail(f"sources[{i}].name", f"{s.name!r} repeats sources[{seen[s.name]}].name")
        seen[s.name] = i
    dd = c.mapping(data.get("dedup") or {}, "dedup", tuple(DedupConfig.__dataclass_fields__))
    dc = c.mapping(data.get("decontamination") or {}, "decontamination",
                   tuple(DecontaminationConfig.__dataclass_fields__))
    lang = c.mapping(data.get("language") or {}, "language", tuple(LanguageConfig.__dataclass_fields__))
    if lang.get("model_path"):
        lang = {**lang, "model_path": expand_location(lang["model_path"], recipe_dir)}
    vf = c.number(data.get("validation_fraction", 0.005), "validation_fraction", 0.0, 0.5)
    return Recipe(
        name=c.string(data["name"], "name"),
        path=file,
        sources=tuple(sources),
        tokenizer=_tokenizer(c, data["tokenizer"], recipe_dir),
        stages=tuple(stages),
        description=str(data.get("description", "")),
        validation_fraction=vf,
        dedup=DedupConfig(**dd),
        decontamination=DecontaminationConfig(
            **{**dc, "extra_paths": tuple(expand_location(p, recipe_dir) for p in dc.get("extra_paths", ()))}),
        language=LanguageConfig(**{**lang, "languages": tuple(lang.get("languages", ("en",)))}),
    )


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Load and validate a recipe YAML file (a path, or the name of a built-in recipe like ``demo``)."""
    p = Path(path)
    if not p.exists() and (RECIPES_DIR / f"{path}.yaml").exists():
        p = RECIPES_DIR / f"{path}.yaml"
    if not p.exists():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: invalid YAML: {e}") from None
    return parse_recipe(data, file=str(path), recipe_dir=p.resolve().parent)
