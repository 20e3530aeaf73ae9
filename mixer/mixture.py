"""Mixtures: named ratios over candidates, domains or sources (docs/design.md's mixture JSON), validated at load."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import fsspec

from corpus.atomic import write_json_atomic
from corpus.errors import DemixError

LEVELS = ("candidate", "domain", "source")
RATIO_TOLERANCE = 1e-9


class MixtureError(DemixError, ValueError):
    """A mixture that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Mixture:
    """Ratios (each >= 0, summing to 1 within 1e-9) over the keys of one level of the manifest."""

    name: str
    level: str
    ratios: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self.name, self.level, self.ratios, self.provenance, "<Mixture>")

    @classmethod
    def from_dict(cls, d: Any, file: str = "<dict>") -> Mixture:
        """Build a mixture from its JSON form; raises MixtureError naming ``file`` and the bad field."""
        if not isinstance(d, dict):
            raise MixtureError(f"{file}: expected a JSON object with name, level, ratios, got {type(d).__name__}")
        unknown = sorted(set(d) - {"name", "level", "ratios", "provenance"})
        if unknown:
            raise MixtureError(
                f"{file}: {unknown[0]}: unknown field; allowed fields are name, level, ratios, provenance"
            )
        for key in ("name", "level", "ratios"):
            if key not in d:
                raise MixtureError(f"{file}: {key}: is required")
        provenance = d.get("provenance") or {}
        _validate(d["name"], d["level"], d["ratios"], provenance, file)
        return cls(
            name=d["name"],
            level=d["level"],
            ratios={str(k): float(v) for k, v in d["ratios"].items()},
            provenance=dict(provenance),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mixture:
        """Read a mixture JSON file (any fsspec URL); raises MixtureError naming the file and field."""
        return cls.from_dict(read_json(path, MixtureError, "mixture"), file=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: {name, level, ratios, provenance}."""
        return {
            "name": self.name,
            "level": self.level,
            "ratios": dict(self.ratios),
            "provenance": dict(self.provenance),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the mixture JSON atomically (temp name, then rename) to a path or fsspec URL."""
        write_json_atomic(path, self.to_dict())


def _validate(name: Any, level: Any, ratios: Any, provenance: Any, file: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise MixtureError(f"{file}: name: expected a non-empty string, got {name!r}")
    if level not in LEVELS:
        raise MixtureError(f"{file}: level: {level!r} is not one of {', '.join(LEVELS)}")
    if not isinstance(ratios, dict) or not ratios:
        raise MixtureError(f"{file}: ratios: expected a non-empty object of key -> ratio, got {ratios!r}")
    total = 0.0
    for key, value in ratios.items():
        if not isinstance(key, str) or not key:
            raise MixtureError(f"{file}: ratios: keys must be non-empty strings, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise MixtureError(f"{file}: ratios.{key}: expected a finite number >= 0, got {value!r}")
        total += float(value)
    if abs(total - 1.0) > RATIO_TOLERANCE:
        raise MixtureError(f"{file}: ratios: must sum to 1 within {RATIO_TOLERANCE:g}, they sum to {total!r}")
    if not isinstance(provenance, dict):
        raise MixtureError(f"{file}: provenance: expected an object, got {provenance!r}")


def read_json(path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """Parse a JSON file at a path or fsspec URL; raises `error` naming the file (missing or invalid)."""
    try:
        with fsspec.open(str(path), "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON: {e}") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise error(f"{path}: cannot read the {what} file: {e}") from None
