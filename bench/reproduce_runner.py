"""Run the reproduction's protocol from exported inputs, on CPU or CUDA, with no DuckDB (issue 16).

    python bench/reproduce_runner.py --inputs runs/reproduce/decide-cuda/inputs --work runs/reproduce/decide-cuda --device cuda

Trains, from exported token streams (bench/reproduce_protocol.py): the base on general data; the DeMix
components at g and at g = 0; the references on every materialised mixture from the base, once per
data-order seed; the paper-style trained proxy (same model, same base) at each compute multiple; the
RegMix-style small model from scratch. Every model and every merged proxy is scored on the same
validation documents and its **per-document** summed NLL saved (work/nll/<method>/<mixture>.npy), so
the statistics can resample documents as well as mixtures. A rerun skips finished runs. Training
uses proxy.training.loop.train_loop (the components' loop) and merging proxy.proxies.ProxyFactory.
Ends by writing work/results.json (bench/reproduce_stats.analyse) unless --no-analyse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from reproduce_protocol import SHAPES, Inputs, baseline_tokens, trained_tokens  # noqa: E402
from reproduce_suite import SuiteScores  # noqa: E402
from tqdm import tqdm  # noqa: E402

from proxy import (  # noqa: E402
    ProxyFactory,
    TrainConfig,
    ValidationSet,
    build_model,
    count_parameters,
    load_model,
    read_demix,
    save_model_folder,
    train_loop,
)
from proxy.evaluate import IGNORE  # noqa: E402


class MixtureStream:
    """Training sequences of one mixture: a seeded source per sequence in proportion to the ratios, a seeded window.

    Sources are allotted to the run's sequences by largest remainder (exact shares, like a plan), shuffled by
    `seed`; each sequence is seq_len tokens at a random offset of its source's stream. The data-order seed is
    the only thing two references of one mixture differ in.
    """

    def __init__(
        self, streams: dict[str, np.ndarray], ratios: dict[str, float], seq_len: int, n_sequences: int, seed: int
    ):
        names = sorted(s for s, r in ratios.items() if r > 0)
        shares = np.array([ratios[s] for s in names], dtype=np.float64)
        exact = shares / shares.sum() * n_sequences
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: n_sequences - counts.sum()]:
            counts[i] += 1
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(np.repeat(np.arange(len(names)), counts))
        self.streams = [streams[s] for s in names]
        for s, arr in zip(names, self.streams):
            if len(arr) <= seq_len:
                raise ValueError(f"source {s!r}: stream of {len(arr)} tokens is shorter than seq_len {seq_len}")
        self.seq_len = seq_len

    def __iter__(self) -> Iterator[torch.Tensor]:
        for k in self.order:
            arr = self.streams[k]
            start = int(self.rng.integers(0, len(arr) - self.seq_len))
            yield torch.from_numpy(arr[start : start + self.seq_len].astype(np.int64))


def new_model(shape: str, vocab_size: int, eos_id: int, seed: int) -> torch.nn.Module:
    from transformers import Qwen3Config  # noqa: PLC0415 - heavy import

    config = Qwen3Config(
        vocab_size=vocab_size,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        **SHAPES[shape],
    )
    return build_model(config, seed)


@dataclass(frozen=True)
class DocTable:
    """The scored documents in evaluation order: domain, source, candidate, tokens and UTF-8 bytes each."""

    domain: tuple[str, ...]
    source: tuple[str, ...]
    candidate: tuple[str, ...]
    tokens: np.ndarray
    bytes: np.ndarray

    def to_dict(self) -> dict:
        return {
            "domain": list(self.domain),
            "source": list(self.source),
            "candidate": list(self.candidate),
            "tokens": self.tokens.tolist(),
            "bytes": self.bytes.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DocTable:
        return cls(
            tuple(d["domain"]),
            tuple(d["source"]),
            tuple(d["candidate"]),
            np.asarray(d["tokens"]),
            np.asarray(d["bytes"], dtype=np.float64),
        )


class DocScorer:
    """Per-document summed NLL (nats) of a model on the validation documents, packed as proxy.evaluate packs them.

    The windows are proxy.evaluate.ValidationSet's (one EOS-joined stream per domain); a document is a
    maximal run of scored targets (EOS targets carry no bytes and are not scored), so summing per document
    gives, per domain, exactly evaluate_model's NLL.
    """

    def __init__(self, inputs: Inputs, device: torch.device, batch_size: int = 32):
        by_domain: dict[str, list] = {}
        for d in inputs.validation:
            by_domain.setdefault(inputs.sources[d["source"]]["domain"], []).append(
                (d["tokens"], d["text"], d["source"])
            )
        budget = max(sum(len(t[0]) for t in docs) for docs in by_domain.values())  # >= every domain: all docs kept
        self.vset = ValidationSet.from_documents(
            by_domain,
            inputs.eos_id,
            budget,
            inputs.protocol.seq_len,
            {s: v["candidate"] for s, v in inputs.sources.items()},
        )
        rows = []
        for domain in sorted(by_domain):  # from_documents' order: domains, then sources, each in input order
            docs = by_domain[domain]
            for source in sorted({d[2] for d in docs}):
                rows += [(domain, source, t[0], t[1]) for t in docs if t[2] == source]
        self.docs = DocTable(
            tuple(r[0] for r in rows),
            tuple(r[1] for r in rows),
            tuple(inputs.sources[r[1]]["candidate"] for r in rows),
            np.array([len(r[2]) for r in rows]),
            np.array([len(r[3].encode("utf-8")) for r in rows], dtype=np.float64),
        )
        self.index = []
        offset = 0
        for batch in self.vset.domains:
            scored = (batch.targets != IGNORE).reshape(-1)
            starts = scored & ~torch.cat([torch.zeros(1, dtype=torch.bool), scored[:-1]])
            doc = torch.cumsum(starts.long(), 0) - 1
            idx = torch.where(scored, doc + offset + 1, torch.zeros_like(doc))  # bucket 0: unscored
            n_docs = int(starts.sum())
            counts = torch.bincount(idx, minlength=offset + n_docs + 1)[offset + 1 :]
            if n_docs != batch.n_docs or not np.array_equal(counts.numpy(), self.docs.tokens[offset : offset + n_docs]):
                raise AssertionError(f"domain {batch.domain}: packed documents do not match the document table")
            self.index.append(idx.view_as(batch.targets))
            offset += n_docs
        self.n_docs = offset
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> np.ndarray:
        model.eval()
        model.to(self.device)
        nll = torch.zeros(self.n_docs + 1, dtype=torch.float64, device=self.device)
        for batch, idx in zip(self.vset.domains, self.index):
            for start in range(0, batch.inputs.shape[0], self.batch_size):
                x = batch.inputs[start : start + self.batch_size].to(self.device)
                y = batch.targets[start : start + self.batch_size].to(self.device)
                logits = model(input_ids=x).logits.float()
                per_token = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="none"
                ).double()
                nll.index_add_(0, idx[start : start + self.batch_size].reshape(-1).to(self.device), per_token)
        return nll[1:].cpu().numpy()


class Runner:
    """Trains and scores every run of the protocol into `work`; each finished piece is skipped on a rerun."""

    def __init__(self, inputs: Inputs, work: Path, device: str = "cpu", progress: bool = True):
        self.inputs, self.p, self.work = inputs, inputs.protocol, Path(work)
        self.device = torch.device(device)
        self.progress = progress
        self.scorer = DocScorer(inputs, self.device)
        self.suite = None  # set by run_protocol when the protocol names a suite (issue 14)
        self.timings: dict[str, float] = {}
        self.tokens: dict[str, int] = {}

    def config(self, tokens: int, seed: int) -> TrainConfig:
        # save_every past the run: these runs are minutes long and a rerun redoes an unfinished one whole
        return TrainConfig(
            tokens=tokens,
            seq_len=self.p.seq_len,
            batch_size=self.p.batch_size,
            lr=self.p.lr,
            seed=seed,
            save_every=10**9,
            log_every=10**9,
        )

    def train(
        self, model: torch.nn.Module, ratios: dict[str, float], tokens: int, seed: int, out: Path
    ) -> torch.nn.Module:
        cfg = self.config(tokens, seed)
        stream = MixtureStream(self.inputs.streams, ratios, self.p.seq_len, cfg.total_steps() * cfg.batch_size, seed)
        train_loop(model, stream, cfg, out, device=self.device, progress=False)
        return model

    def model_folder(self, folder: Path, make) -> Path:
        if read_demix(folder) is None:
            model = make()
            save_model_folder(model.to("cpu"), folder, tokenizer_dir=None, demix={"kind": "component"})
        return folder

    def scored(self, method: str, name: str, make) -> np.ndarray:
        path = self.work / "nll" / method / f"{name}.npy"
        if path.exists() and (self.suite is None or self.suite.done(method, name)):
            return np.load(path)
        model = make()  # training is seeded: a model rebuilt only for its missing suite scores is the same model
        if self.suite is not None:
            self.suite.score(method, name, model)
        if path.exists():
            return np.load(path)
        out = self.scorer(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
        return out

    def run(self) -> dict[str, np.ndarray]:
        """{method: per-document NLL [n_mixtures, n_docs]} in mixture-name order; also sets timings and tokens."""
        inp, p = self.inputs, self.p
        names = sorted(inp.mixtures)
        models = self.work / "models"
        t = time.perf_counter()
        base = self.model_folder(
            models / "base",
            lambda: self.train(
                new_model(p.model, inp.vocab_size, inp.eos_id, p.seed),
                inp.base,
                p.base_tokens,
                p.seed,
                self.work / "train" / "base",
            ),
        )
        self.timings["base"] = time.perf_counter() - t
        n_model = count_parameters(load_model(base))
        n_cand = len(inp.candidates)
        t = time.perf_counter()
        factories = {}
        for key, comps in sorted(inp.components.items()):
            folders = [
                self.model_folder(
                    models / f"components-{key}" / c,
                    lambda c=c: self.train(
                        load_model(base), comps[c], p.component_tokens, p.seed, self.work / "train" / key / c
                    ),
                )
                for c in inp.candidates
            ]
            factories[key] = ProxyFactory(folders, device=self.device)
        self.timings["components"] = time.perf_counter() - t
        out: dict[str, list[np.ndarray]] = {}
        bar = tqdm(
            total=len(names) * (len(p.reference_seeds) + len(p.trained_multiples) + 3),
            desc="runs",
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )

        def do(method: str, name: str, make) -> None:
            out.setdefault(method, []).append(self.scored(method, name, make))
            bar.update(1)

        t = time.perf_counter()
        g_key = f"g{p.general_share:g}"
        for name in names:
            mix = inp.mixtures[name]
            do(f"demix/{g_key}", name, lambda: factories[g_key].proxy(mix["alpha"]))
            # g = 0 components merged on the materialised candidate weights: the same data as the references
            weights = {c: 0.0 for c in inp.candidates}
            for s, r in mix["sources"].items():
                weights[inp.sources[s]["candidate"]] += r
            do("demix/g0", name, lambda: factories["g0"].proxy(weights))
        self.timings["merge+score"] = time.perf_counter() - t
        t = time.perf_counter()
        for seed in p.reference_seeds:
            for name in names:
                do(
                    f"reference/s{seed}",
                    name,
                    lambda: self.train(
                        load_model(base),
                        inp.mixtures[name]["sources"],
                        p.component_tokens,
                        seed,
                        self.work / "train" / "ref",
                    ),
                )
        self.timings["references"] = time.perf_counter() - t
        self.tokens["reference"] = len(names) * len(p.reference_seeds) * p.component_tokens
        t = time.perf_counter()
        for k, multiple in enumerate(p.trained_multiples):
            tokens = trained_tokens(p, n_cand, multiple)
            self.tokens[f"trained/{multiple:g}x"] = tokens * len(names)
            for name in names:  # its own data-order seed, shared with no reference
                do(
                    f"trained/{multiple:g}x",
                    name,
                    lambda: self.train(
                        load_model(base),
                        inp.mixtures[name]["sources"],
                        tokens,
                        1000 + k,
                        self.work / "train" / "trained",
                    ),
                )
        self.timings["trained"] = time.perf_counter() - t
        n_bl = count_parameters(new_model(p.baseline_model, inp.vocab_size, inp.eos_id, 0))
        bl_tokens = baseline_tokens(p, n_cand, n_model, n_bl)
        t = time.perf_counter()
        for i, name in enumerate(names):
            do(
                "regmix",
                name,
                lambda: self.train(
                    new_model(p.baseline_model, inp.vocab_size, inp.eos_id, p.seed + 7),
                    inp.mixtures[name]["sources"],
                    bl_tokens,
                    2000,
                    self.work / "train" / "regmix",
                ),
            )
        bar.close()
        self.timings["regmix"] = time.perf_counter() - t
        # compute in units of 6ND of the proxy model: the components' total is n_cand x component_tokens
        self.tokens["regmix"] = bl_tokens * len(names)
        self.tokens["demix"] = n_cand * p.component_tokens
        self.tokens["base"] = p.base_tokens
        self.parameters = {"model": n_model, "baseline": n_bl}
        # both DeMix variants cost one set of components (the base is shared by every method but RegMix-style)
        self.compute = {
            f"demix/{g_key}": 1.0,
            "demix/g0": 1.0,
            "regmix": bl_tokens * len(names) * n_bl / (n_cand * p.component_tokens * n_model),
            **{
                f"trained/{m:g}x": trained_tokens(p, n_cand, m) * len(names) / (n_cand * p.component_tokens)
                for m in p.trained_multiples
            },
            "share": 0.0,
        }
        return {m: np.stack(v) for m, v in out.items()}


def run_protocol(
    inputs_dir: Path, work: Path, device: str = "cpu", progress: bool = True, analyse: bool = True, threads: int = 1
) -> dict:
    """Run everything and (unless analyse=False) write work/results.json; returns the results (or the run record)."""
    from reproduce_stats import analyse as analyse_fn  # noqa: PLC0415 - stats need scipy only when analysing

    t0 = time.perf_counter()
    if device == "cpu":
        # One thread per process: these models are tiny, and on a shared 2-core machine two torch threads
        # spin-wait on each other (measured under load 6-10: micro 495 tok/s with 2 threads, 4,487 with 1).
        torch.set_num_threads(threads)
    inputs = Inputs.load(inputs_dir)
    runner = Runner(inputs, work, device, progress)
    if inputs.protocol.suite is not None:
        runner.suite = SuiteScores(inputs_dir, work, runner.device, inputs.protocol.suite_limit)
    nll = runner.run()
    record = {
        "protocol": inputs.protocol.__dict__
        | {
            "reference_seeds": list(inputs.protocol.reference_seeds),
            "trained_multiples": list(inputs.protocol.trained_multiples),
        },
        "mixtures": inputs.mixtures,
        "candidates": inputs.candidates,
        "sources": inputs.sources,
        "docs": runner.scorer.docs.to_dict(),
        "timings_s": runner.timings,
        "tokens": runner.tokens,
        "compute": runner.compute,
        "parameters": runner.parameters,
        "device": str(runner.device),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if runner.device.type == "cuda" else "cpu",
    }
    if runner.suite is not None:
        record["suite"] = runner.suite.record(sorted(inputs.mixtures))
    np.savez_compressed(work / "nll.npz", **{m.replace("/", "__"): v for m, v in nll.items()})
    record["timings_s"]["train+score"] = time.perf_counter() - t0
    # a rerun skips finished runs, so its phase times are near 0: the run that trained keeps its times
    timings = work / "timings.json"
    if timings.exists():
        record["timings_s"] = json.loads(timings.read_text()) | {"rerun": record["timings_s"]["train+score"]}
    else:
        timings.write_text(json.dumps(record["timings_s"]))
    if not analyse:
        (work / "run.json").write_text(json.dumps(record, indent=1, default=float))
        return record
    t = time.perf_counter()
    results = analyse_fn(record, nll)
    results["timings_s"]["analysis"] = time.perf_counter() - t
    results["timings_s"]["total"] = results["timings_s"]["train+score"] + results["timings_s"]["analysis"]
    tmp = work / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=float))
    tmp.replace(work / "results.json")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--inputs", type=Path, required=True, help="folder written by bench/reproduce.py --export-only")
    p.add_argument("--work", type=Path, required=True, help="models, per-document NLL and results.json go here")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    res = run_protocol(args.inputs, args.work, args.device)
    print(f"wrote {args.work / 'results.json'} ({res['timings_s']['total']:.0f} s)")
    for line in res.get("verdicts", {}).values():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
