"""Plans: how many tokens each source gives to a training run, with epochs and the shard list (JSON)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from corpus.atomic import write_json_atomic
from corpus.errors import DemixError
from corpus.recipe import NAME_RULE  # not exported by corpus/__init__.py (yet)
from mixer.mixture import read_json

PLAN_VERSION = 1
# The recipe's source-name rule: a name becomes a folder (data/<source>/ in a release), so it may hold
# no '/' and cannot start with a dot; one rule for recipes and plans.
SOURCE_NAME = re.compile(NAME_RULE["pattern"])


class PlanError(DemixError, ValueError):
    """A plan that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class PlanSource:
    """One source of a plan: its share of the target, tokens available and allotted, epochs, shards.

    ``shards`` are dicts {path (relative to the plan's corpus_root), sha256, n_tokens, n_docs};
    ``stages`` maps stage name to allotted tokens when the plan was resolved from a staged recipe.
    """

    source: str
    domain: str
    tier: str
    candidate: str | None
    share: float
    available_tokens: int
    allotted_tokens: int
    epochs: float
    shards: tuple[dict[str, Any], ...] = ()
    stages: dict[str, int] = field(default_factory=dict)
    n_docs: int = 0
    license: str | None = None
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this row."""
        return {
            "source": self.source,
            "domain": self.domain,
            "tier": self.tier,
            "candidate": self.candidate,
            "share": self.share,
            "available_tokens": self.available_tokens,
            "allotted_tokens": self.allotted_tokens,
            "epochs": self.epochs,
            "n_docs": self.n_docs,
            "license": self.license,
            "title": self.title,
            "stages": dict(self.stages),
            "shards": [dict(s) for s in self.shards],
        }


@dataclass(frozen=True)
class Plan:
    """A resolved mixture: integer token allotments per source summing exactly to ``target_tokens``."""

    target_tokens: int
    seed: int
    seq_len: int
    corpus_root: str
    eos_id: int | None
    mixture: dict[str, Any]
    sources: tuple[PlanSource, ...]
    stages: tuple[dict[str, Any], ...] = ()
    tokenizer_path: str | None = None
    recipe: str | None = None
    config_hash: str | None = None
    max_epochs: float | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What the resolver wants the user to know (e.g. a mixture resolved as-is); not part of the content or hash."""

    def _content(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "target_tokens": self.target_tokens,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "corpus_root": self.corpus_root,
            "eos_id": self.eos_id,
            "tokenizer_path": self.tokenizer_path,
            "recipe": self.recipe,
            "config_hash": self.config_hash,
            "max_epochs": self.max_epochs,
            "mixture": self.mixture,
            "stages": [dict(s) for s in self.stages],
            "sources": [s.to_dict() for s in self.sources],
        }

    @property
    def plan_id(self) -> str:
        """Content hash (16 hex chars) of everything in the plan."""
        blob = json.dumps(self._content(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with ``plan_id`` first."""
        return {"plan_id": self.plan_id, **self._content()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan JSON atomically to a path or fsspec URL."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan JSON file (any fsspec URL); raises PlanError naming the file and field."""
        try:
            raw = read_json(path, PlanError, "plan")
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:  # a folder, no read access, binary
            raise PlanError(f"{path}: cannot read the plan file: {getattr(e, 'strerror', None) or e}") from None
        return cls.from_dict(raw, file=str(path))

    @classmethod
    def from_dict(cls, d: Any, file: str = "<dict>") -> Plan:
        """Validate the JSON form into a Plan; raises PlanError naming ``file`` and the bad field."""
        c = _Check(file)
        if not isinstance(d, dict):
            c.fail("", f"expected a JSON object, got {type(d).__name__}")
        for key in ("target_tokens", "seed", "seq_len", "corpus_root", "sources"):
            if key not in d:
                c.fail(key, "is required")
        raw_sources = d["sources"]
        if not isinstance(raw_sources, list):
            c.fail("sources", f"expected a list, got {type(raw_sources).__name__}")
        sources = tuple(_source(c, s, f"sources[{i}]") for i, s in enumerate(raw_sources))
        names = [s.source for s in sources]
        if len(set(names)) != len(names):
            c.fail("sources", "source names repeat")
        if d.get("max_epochs") is not None:
            c.number(d["max_epochs"], "max_epochs")
        plan = cls(
            target_tokens=c.integer(d["target_tokens"], "target_tokens"),
            seed=c.integer(d["seed"], "seed"),
            seq_len=c.integer(d["seq_len"], "seq_len", lo=1),
            corpus_root=c.string(d["corpus_root"], "corpus_root", empty=True),
            eos_id=None if d.get("eos_id") is None else c.integer(d["eos_id"], "eos_id"),
            mixture=c.mapping(d.get("mixture") or {}, "mixture"),
            sources=sources,
            stages=tuple(
                c.mapping(st, f"stages[{i}]") for i, st in enumerate(c.array(d.get("stages") or [], "stages"))
            ),
            tokenizer_path=None
            if d.get("tokenizer_path") is None
            else c.relative_path(d["tokenizer_path"], "tokenizer_path"),
            recipe=None if d.get("recipe") is None else c.string(d["recipe"], "recipe"),
            config_hash=None if d.get("config_hash") is None else c.string(d["config_hash"], "config_hash"),
            max_epochs=d.get("max_epochs"),  # checked above and kept as written: the content hash covers it
        )
        total = sum(s.allotted_tokens for s in sources)
        if total != plan.target_tokens:
            c.fail("sources", f"allotted_tokens sum to {total}, not target_tokens {plan.target_tokens}")
        if "plan_id" in d and d["plan_id"] != plan.plan_id:
            c.fail(
                "plan_id", f"{d['plan_id']!r} does not match the content hash {plan.plan_id!r} (was the file edited?)"
            )
        return plan


class _Check:
    def __init__(self, file: str):
        self.file = file

    def fail(self, key: str, message: str) -> None:
        raise PlanError(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def integer(self, value: Any, key: str, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.fail(key, f"expected an integer >= {lo}, got {value!r}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            self.fail(key, f"expected a finite number >= 0, got {value!r}")
        return float(value)

    def string(self, value: Any, key: str, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value):
            self.fail(key, f"expected a string, got {value!r}")
        return value

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected an object, got {value!r}")
        return value

    def array(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {value!r}")
        return value

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def name(self, value: Any, key: str) -> str:
        name = self.string(value, key)
        if not SOURCE_NAME.fullmatch(name):
            self.fail(key, f"{name!r} {NAME_RULE['hint']}")
        return name

    def relative_path(self, value: Any, key: str) -> str:
        # read relative to corpus_root only: no absolute path, URL or '..' that leaves it
        path = self.string(value, key)
        if path.startswith(("/", "\\")) or "://" in path or ".." in re.split(r"[/\\]", path):
            self.fail(key, f"{path!r} must be a path relative to corpus_root, without '..'")
        return path


def _source(c: _Check, raw: Any, key: str) -> PlanSource:
    if not isinstance(raw, dict):
        c.fail(key, f"expected an object, got {raw!r}")
    for k in ("source", "available_tokens", "allotted_tokens"):
        if k not in raw:
            c.fail(f"{key}.{k}", "is required")
    shards = []
    for j, sh in enumerate(raw.get("shards") or []):
        sk = f"{key}.shards[{j}]"
        if not isinstance(sh, dict):
            c.fail(sk, f"expected an object, got {sh!r}")
        for k in ("path", "n_tokens", "n_docs"):
            if k not in sh:
                c.fail(f"{sk}.{k}", "is required")
        c.relative_path(sh["path"], f"{sk}.path")
        c.integer(sh["n_tokens"], f"{sk}.n_tokens")
        c.integer(sh["n_docs"], f"{sk}.n_docs")
        shards.append(dict(sh))
    stages = raw.get("stages") or {}
    if not isinstance(stages, dict):
        c.fail(f"{key}.stages", f"expected an object of stage -> tokens, got {stages!r}")
    return PlanSource(
        source=c.name(raw["source"], f"{key}.source"),
        domain=str(raw.get("domain", "")),
        tier=str(raw.get("tier", "")),
        candidate=c.optional_string(raw.get("candidate"), f"{key}.candidate"),
        share=c.number(raw.get("share", 0.0), f"{key}.share"),
        available_tokens=c.integer(raw["available_tokens"], f"{key}.available_tokens"),
        allotted_tokens=c.integer(raw["allotted_tokens"], f"{key}.allotted_tokens"),
        epochs=c.number(raw.get("epochs", 0.0), f"{key}.epochs"),
        shards=tuple(shards),
        stages={str(k): c.integer(v, f"{key}.stages.{k}") for k, v in stages.items()},
        n_docs=c.integer(raw.get("n_docs", 0), f"{key}.n_docs"),
        license=c.optional_string(raw.get("license"), f"{key}.license"),
        title=c.optional_string(raw.get("title"), f"{key}.title"),
    )
