"""The DeMix method: component training, merging, proxy evaluation, mixture search, validation.

Where each step lives (docs/method.md walks through them, docs/design.md shows the flow):

- **Models**: `proxy.model` (presets tiny/small/base, model folders and their `demix.json`).
- **Training** (steps 1-2): `proxy.training` — `run` (`train_on_mixture`, `train_base`,
  `train_reference`, `train_components`), `loop` (`TrainConfig`, `train_loop`), `state` (resume),
  `fsdp`, `lr_schedule`.
- **Components**: `proxy.components` (`components.json`, `load_components`); `proxy.weights` (lazy
  safetensors access and compatibility checks).
- **Merging** (step 3): `proxy.merge` (`merge_to_folder`: linear, task arithmetic, TIES, streamed to
  disk) and `proxy.proxies` (`ProxyFactory`: merged proxies in memory, no disk I/O per proxy).
- **Evaluation** (step 4): `proxy.evaluate` (`ValidationSet`, `evaluate_model`: held-out bits per
  byte per domain, source and candidate); benchmark suites through lm-eval in `proxy.suite` and
  `proxy.benchmarks` (the runner), `proxy.offline_tasks` (the offline suite's task data).
- **Search** (steps 5-6): `proxy.mixture_sampling` (the Dirichlet pool), `proxy.predictor`,
  `proxy.search` (`run_search`, for any score function), `proxy.search_proxies` (the search over
  merged proxies and its outputs), `proxy.plots`.
- **Validation** (step 7): `proxy.validate` (`rank_consistency`: Spearman, top-25%, maintain).
- **Commands**: `proxy.cli` (one module per subcommand of `proxy`; the library modules never parse
  arguments or print).

The names below are what `bench/`, scripts and users import: `from proxy import ProxyFactory, run_search`.
Importing `proxy` imports torch (every step needs it) but not transformers, which loads when a model
is built or read.
"""

from __future__ import annotations

from proxy.benchmarks import SuiteRunner, load_tokenizer_for, prepare_suite
from proxy.components import Components, load_components, write_components_file
from proxy.errors import ProxyError
from proxy.evaluate import ValidationSet, equal_split, evaluate_model, evaluate_report, flat_metrics
from proxy.merge import MergeError, MergeSettings, merge_to_folder, ratio_vector
from proxy.mixture_sampling import SamplingSettings, sample_mixtures
from proxy.model import (
    PRESETS,
    ModelFolderError,
    build_model,
    count_parameters,
    load_model,
    model_config,
    read_demix,
    save_model_folder,
    write_demix,
)
from proxy.predictor import MetricPredictor, PredictorSettings
from proxy.proxies import ProxyFactory
from proxy.search import Objective, SearchResult, SearchSettings, run_search
from proxy.search_proxies import candidate_tokens, search_prior, search_with_proxies
from proxy.suite import Suite, SuiteError, load_suite
from proxy.synthetic import tiny_qwen3_config, write_synthetic_components
from proxy.training.loop import TrainConfig, TrainResult, train_loop
from proxy.training.run import RunOutcome, train_base, train_components, train_on_mixture, train_reference
from proxy.validate import RankConsistency, rank_consistency, read_scores, validate_tables
from proxy.weights import CheckpointError

__all__ = [
    "CheckpointError",
    "Components",
    "MergeError",
    "MergeSettings",
    "MetricPredictor",
    "ModelFolderError",
    "Objective",
    "PRESETS",
    "PredictorSettings",
    "ProxyError",
    "ProxyFactory",
    "RankConsistency",
    "RunOutcome",
    "SamplingSettings",
    "SearchResult",
    "SearchSettings",
    "Suite",
    "SuiteError",
    "SuiteRunner",
    "TrainConfig",
    "TrainResult",
    "ValidationSet",
    "build_model",
    "candidate_tokens",
    "count_parameters",
    "equal_split",
    "evaluate_model",
    "evaluate_report",
    "flat_metrics",
    "load_components",
    "load_model",
    "load_suite",
    "load_tokenizer_for",
    "merge_to_folder",
    "model_config",
    "prepare_suite",
    "rank_consistency",
    "ratio_vector",
    "read_demix",
    "read_scores",
    "run_search",
    "sample_mixtures",
    "save_model_folder",
    "search_prior",
    "search_with_proxies",
    "tiny_qwen3_config",
    "train_base",
    "train_components",
    "train_loop",
    "train_on_mixture",
    "train_reference",
    "validate_tables",
    "write_components_file",
    "write_demix",
    "write_synthetic_components",
]
