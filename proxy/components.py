"""components.json: the K DeMix components of one base, and `Components`, their loaded form.

`<components>/components.json` is written by `proxy components` (proxy.training.run.train_components,
after every finished component) with `write_components_file`, and read back by `load_components`
for merge, evaluate and search:

    {
      "base": "/abs/runs/base",               # the base model folder every component continued from
      "db": "/abs/out/demo/manifest.duckdb",  # the corpus manifest the components trained on
      "general_share": 0.5,                   # g: share of general data in each component's stream
      "general": {"level": "domain", "ratios": {"general": 1.0}},  # what "general" meant (mixer.materialise)
      "tokens": 10000000,                     # training tokens of each component (all ranks)
      "candidates": {                         # one entry per component, named after its candidate
        "code_high": {
          "path": "code_high",                # the component's model folder
          "tokens": 10000000,
          "checkpoints": {"2000000": "code_high/checkpoints/tokens-2000000"}   # budget -> model folder
        }
      }
    }

Paths under "candidates" are relative to the components folder. A list of model folders (no
components.json) also loads: names are the folder names, base/db/general_share come from the first
folder's demix.json (proxy.model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus.atomic import write_json_atomic
from mixer.materialise import DEFAULT_GENERAL
from proxy.model import read_demix
from proxy.weights import CheckpointError, read_json

COMPONENTS_FILE = "components.json"


@dataclass(frozen=True)
class Components:
    """K component model folders (names are candidate names) and the base they continued from."""

    names: tuple[str, ...]
    paths: tuple[Path, ...]
    base: Path | None
    db: str | None
    budget: int | None = None
    general_share: float | None = None
    """Share of general data in each component's training stream (components.json); None when unrecorded."""
    general: dict[str, Any] | None = None
    """What "general" meant for the components: a {level, ratios} mixture (components.json)."""

    def general_provenance(self) -> dict[str, Any]:
        """The fields a searched mixture records so that it can be materialised: general_share and general."""
        if self.general_share is None:
            return {}
        return {"general_share": self.general_share, "general": self.general or dict(DEFAULT_GENERAL)}

    def path_of(self, name: str) -> Path:
        """Folder of component `name`; raises KeyError."""
        return self.paths[self.names.index(name)]


def read_components_file(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's components.json as written, or None when there is none; raises CheckpointError."""
    path = Path(folder) / COMPONENTS_FILE
    return read_json(path) if path.exists() else None


def write_components_file(folder: str | os.PathLike, index: dict[str, Any]) -> Path:
    """Write the folder's components.json atomically (keys as in the module docstring); returns its path."""
    path = Path(folder) / COMPONENTS_FILE
    write_json_atomic(path, index, sort_keys=True)
    return path


def load_components(source: str | os.PathLike | Sequence[str | os.PathLike], budget: int | None = None) -> Components:
    """Components from a components dir (components.json) or a list of model folders; `budget` picks checkpoints.

    Raises CheckpointError when the layout is incomplete or a budget has no checkpoint for some component.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise CheckpointError(f"{root}: no such components folder (components.json) or model folder")
        manifest = root / COMPONENTS_FILE
        if manifest.exists():
            spec = read_json(manifest)
            names, paths = [], []
            for name, entry in sorted(spec.get("candidates", {}).items()):
                rel = entry.get("path", name)
                if budget is not None:
                    cps = {int(k): v for k, v in (entry.get("checkpoints") or {}).items()}
                    if budget not in cps and int(entry.get("tokens", -1)) != budget:
                        raise CheckpointError(
                            f"{manifest}: candidates.{name}.checkpoints: no checkpoint at {budget} "
                            f"tokens (have {sorted(cps)})"
                        )
                    rel = cps.get(budget, rel)
                names.append(name)
                paths.append(root / rel)
            if not names:
                raise CheckpointError(f"{manifest}: candidates: empty")
            base = spec.get("base")
            share = spec.get("general_share")
            return Components(
                tuple(names),
                tuple(paths),
                Path(base) if base else None,
                spec.get("db"),
                budget,
                float(share) if share is not None else None,
                spec.get("general"),
            )
        folders = [root]
    else:
        folders = [Path(p) for p in source]
    names = [p.name for p in folders]
    if len(set(names)) != len(names):
        raise CheckpointError(f"component folder names are not unique: {names}")
    meta = read_demix(folders[0]) or {}
    base = meta.get("base")
    share = meta.get("general_share")
    return Components(
        tuple(names),
        tuple(folders),
        Path(base) if base else None,
        meta.get("db"),
        budget,
        float(share) if share is not None else None,
    )
