"""The reproduction's second target (issue 14): every reference and every proxy also scored on a benchmark suite.

With `suite: offline` in the protocol (bench/reproduce_protocol.py; on for --quick and the full run), the
export writes the suite's prepared task data beside the other inputs, so the runner needs no DuckDB and
no corpus (the GPU path carries the inputs folder to another machine):

    inputs/suite/
      suite.yaml          the suite (proxy/suites/<name>.yaml as exported)
      tasks/              the generated lm-eval task YAMLs and their JSONL (proxy.offline_tasks.build_offline_tasks)
      tokenizer/          the corpus's tokenizer (lm-eval tokenizes the requests itself)
      suite.json          {"suite", "tasks", "rows", "math_in_training"}; written last: the export is complete

The runner rewrites the task YAMLs into work/suite/tasks with data files pointing into the inputs folder
wherever it now lives, and scores each model through proxy.benchmarks.SuiteRunner (lm-eval on the
in-memory model, `suite_limit` samples per task). SuiteRunner wraps one model object once, so each model's
weights are copied into a holder of its shape (one per shape: the proxy model and the RegMix-style one).
Scores are saved per model as work/suite/<method>/<mixture>.json (a rerun skips them).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from reproduce_protocol import INPUTS_FILE, Protocol

from proxy.benchmarks import PreparedSuite, SuiteRunner, prepare_suite
from proxy.errors import ProxyError
from proxy.suite import KNOWN_DIRECTIONS, Suite, load_suite

SUITE_FOLDER = "suite"
SUITE_FILE = "suite.json"


def _protocol(inputs_dir: Path) -> Protocol:
    return Protocol.from_dict(json.loads((Path(inputs_dir) / INPUTS_FILE).read_text())["protocol"])


def suite_pending(inputs_dir: str | Path) -> bool:
    """True when the exported protocol asks for a suite whose task data is not exported yet."""
    inputs_dir = Path(inputs_dir)
    return _protocol(inputs_dir).suite is not None and not (inputs_dir / SUITE_FOLDER / SUITE_FILE).is_file()


def export_suite(db: str | Path, inputs_dir: str | Path) -> Path:
    """Build the protocol's suite from the corpus (DuckDB) into inputs/suite; returns that folder."""
    from manifests import get_meta, open_manifest  # noqa: PLC0415 - DuckDB, export side only

    inputs_dir = Path(inputs_dir)
    protocol = _protocol(inputs_dir)
    suite = load_suite(protocol.suite)
    if suite.build != "offline":  # lm-eval's built-in tasks fetch their data from the Hub: nothing to carry
        raise ProxyError(
            f"protocol suite {protocol.suite!r}: only suites with generated task files (build: offline) "
            "can travel with the inputs"
        )
    folder = inputs_dir / SUITE_FOLDER
    prepared = prepare_suite(suite, folder / "tasks", db, seed=protocol.seed)
    shutil.copy2(suite.file, folder / "suite.yaml")
    with open_manifest(db, read_only=True) as con:
        tok_dir = Path(db).parent / get_meta(con).get("tokenizer_path", "tokenizer")
    shutil.copytree(tok_dir, folder / "tokenizer", dirs_exist_ok=True)
    stamp = json.loads((prepared.include_path / "offline.json").read_text())
    record = {
        "suite": suite.name,
        "tasks": [t.task for t in suite.tasks],
        "rows": stamp["rows"],
        "math_in_training": stamp["math_in_training"],
    }
    (folder / SUITE_FILE).write_text(json.dumps(record, indent=1))  # last: its presence means complete
    return folder


def load_exported(inputs_dir: str | Path, work: str | Path) -> PreparedSuite:
    """The exported suite, its task YAMLs rewritten into work/suite/tasks to point at inputs/suite/tasks."""
    src = Path(inputs_dir).resolve() / SUITE_FOLDER
    if not (src / SUITE_FILE).is_file():
        raise ProxyError(f"{src / SUITE_FILE}: not found (the protocol names a suite; export the inputs again)")
    suite = load_suite(src / "suite.yaml")
    dst = Path(work) / SUITE_FOLDER / "tasks"
    dst.mkdir(parents=True, exist_ok=True)
    for t in suite.tasks:
        doc = yaml.safe_load((src / "tasks" / f"{t.task}.yaml").read_text())
        data = src / "tasks" / f"{t.task}.jsonl"
        if not data.is_file():
            raise ProxyError(f"{data}: the suite's task data is missing from the inputs")
        doc["dataset_kwargs"] = {"data_files": {"test": str(data)}}  # the export's absolute path is another machine's
        (dst / f"{t.task}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return PreparedSuite(suite, dst)


class SuiteScores:
    """Scores models on the exported suite and keeps them per (method, mixture) under work/suite."""

    def __init__(self, inputs_dir: str | Path, work: str | Path, device: Any, limit: int, batch_size: int = 16):
        from transformers import AutoTokenizer  # noqa: PLC0415 - heavy

        self.prepared = load_exported(inputs_dir, work)
        self.suite: Suite = self.prepared.suite
        self.tokenizer = AutoTokenizer.from_pretrained(str(Path(inputs_dir) / SUITE_FOLDER / "tokenizer"))
        self.folder = Path(work) / SUITE_FOLDER
        self.device, self.limit, self.batch_size = device, limit, batch_size
        self.runners: dict[tuple, tuple[Any, SuiteRunner]] = {}
        self.seconds = 0.0
        self.models = 0

    def path(self, method: str, name: str) -> Path:
        return self.folder / method / f"{name}.json"

    def done(self, method: str, name: str) -> bool:
        return self.path(method, name).is_file()

    def _runner(self, model: Any) -> tuple[Any, SuiteRunner]:
        # one lm-eval wrapper and one task set per model shape, reused for every model of that shape
        key = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
        if key not in self.runners:
            holder = copy.deepcopy(model).to(self.device).eval()
            self.runners[key] = (
                holder,
                SuiteRunner(
                    self.prepared,
                    holder,
                    self.tokenizer,
                    batch_size=self.batch_size,
                    device=str(self.device),
                    limit=self.limit,
                ),
            )
        return self.runners[key]

    def score(self, method: str, name: str, model: Any) -> dict[str, float]:
        """Score ``model`` (unless already saved) and save its score columns; returns them."""
        path = self.path(method, name)
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        holder, runner = self._runner(model)
        holder.load_state_dict(model.state_dict())  # strict: same names and shapes, or it raises
        with contextlib.redirect_stderr(io.StringIO()):  # lm-eval's per-call progress bars, one per model
            scores = runner.score()
        self.seconds += time.perf_counter() - t0
        self.models += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(scores, indent=1, sort_keys=True))
        tmp.replace(path)
        return scores

    def record(self, names: list[str]) -> dict[str, Any]:
        """What results.json keeps: the suite, its columns and directions, and every saved score."""
        suite = self.suite
        columns, directions, domain_of = [], {}, {}
        for d in suite.domains:
            columns.append(suite.domain_column(d))
            directions[suite.domain_column(d)], domain_of[suite.domain_column(d)] = suite.domain_direction(d), d
        secondary = []
        for d, tasks in suite.domains.items():
            for t in tasks:
                # a one-task domain's scored metric is its domain score: kept once
                for m in ((t.metric,) if len(tasks) > 1 else ()) + t.also:
                    c = t.column(m)
                    secondary.append(c)
                    directions[c] = t.direction if m == t.metric else KNOWN_DIRECTIONS[m]
                    domain_of[c] = d
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for method_dir in sorted(p for p in self.folder.glob("**/") if p != self.folder):
            for f in sorted(method_dir.glob("*.json")):
                if f.stem in names:
                    scores.setdefault(str(method_dir.relative_to(self.folder)), {})[f.stem] = json.loads(f.read_text())
        return {
            "name": suite.name,
            "limit": self.limit,
            "primary": columns,
            "secondary": secondary,
            "directions": directions,
            "domain_of": domain_of,
            "scores": scores,
            "seconds": self.seconds,
            "models_scored": self.models,
        }
