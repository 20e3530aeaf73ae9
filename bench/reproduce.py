"""Does merging rank mixtures as training does, at what cost, against what? (issue 16, pre-registered in docs/reproduction.md)

    python bench/reproduce.py --quick                 # n = 24 mixtures, about 15 minutes on 2 idle cores
    python bench/reproduce.py                         # n = 64, about 75 minutes on 2 cores
    python bench/reproduce.py --device cuda           # export the GPU run's inputs and print its one command
    python bench/reproduce.py --report-only           # re-render docs/reproduction.md from docs/reproduction/*.json
    python bench/reproduce.py --search-check --quick  # on a finished work folder: searched picks, trained and judged

Steps: build the demo corpus if needed; export the protocol's inputs (mixtures drawn before any training,
materialised ratios, token streams as .npy, validation documents) with bench/reproduce_protocol.py;
train and score everything with bench/reproduce_runner.py (no DuckDB; a rerun skips finished runs);
bootstrap the endpoints with bench/reproduce_stats.py; write docs/reproduction/<tag>.json and PNGs and
regenerate docs/reproduction.md (bench/reproduce_report.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reproduce_protocol import INPUTS_FILE, PROTOCOLS, export_inputs  # noqa: E402
from reproduce_report import render_report, search_check_section  # noqa: E402
from reproduce_search import attach_search_check, run_search_check  # noqa: E402
from reproduce_suite import export_suite, suite_pending  # noqa: E402

DOCS = ROOT / "docs" / "reproduction"


def ensure_corpus(out: Path, limit: int | None) -> Path:
    """Build the demo corpus into `out` unless its manifest is already there."""
    if (out / "manifest.duckdb").exists():
        return out
    cmd = [sys.executable, "-m", "pipelines.build_corpus", "--recipe", "corpus/recipes/demo.yaml", "--out", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    print(f"building corpus: {shlex.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the n = 24 protocol (about 15 minutes)")
    p.add_argument(
        "--device", default="cpu", help="cpu (run here) or cuda (export the GPU protocol and print its command)"
    )
    p.add_argument("--tag", help="name of this run's results (default decide-quick / decide-full / decide-cuda)")
    p.add_argument("--corpus", type=Path, help="a built corpus folder (default out/reproduce-quick)")
    p.add_argument("--work", type=Path, help="training outputs (default runs/reproduce/<tag>)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: the protocol's 10,000)")
    p.add_argument("--export-only", action="store_true", help="write <work>/inputs and stop")
    p.add_argument(
        "--collect",
        type=Path,
        help="a finished work folder (results.json, e.g. from the GPU machine) to add to docs/reproduction/",
    )
    p.add_argument("--report-only", action="store_true", help="only regenerate docs/reproduction.md")
    p.add_argument(
        "--search-check",
        action="store_true",
        help="on a finished work folder: the search's pick, the "
        "share rule's and a trained-proxy search's, trained and judged on held-out documents "
        "(bench/reproduce_search.py; needs the corpus the inputs came from, --corpus)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved protocol and stop")
    args = p.parse_args(argv)
    if args.collect:
        res = json.loads((args.collect / "results.json").read_text())
        tag = args.tag or res["protocol"]["tag"]
        DOCS.mkdir(parents=True, exist_ok=True)
        (DOCS / f"{tag}.json").write_text(json.dumps(res, indent=1, sort_keys=True, default=float))
        print(f"wrote {render_report(DOCS, ROOT / 'docs' / 'reproduction.md')}")
        return 0
    if args.report_only:
        print(f"wrote {render_report(DOCS, ROOT / 'docs' / 'reproduction.md')}")
        return 0
    cuda = args.device.startswith("cuda")
    protocol = PROTOCOLS["cuda" if cuda else "quick" if args.quick else "full"]
    protocol = replace(protocol, tag=args.tag or protocol.tag)
    if args.bootstrap:
        protocol = replace(protocol, bootstrap=args.bootstrap)
    if args.dry_run:
        print(json.dumps(protocol.__dict__, indent=1, default=list))
        return 0
    work = args.work or ROOT / "runs" / "reproduce" / protocol.tag
    if args.search_check:
        return search_check(work, args.corpus or ROOT / "out" / "reproduce-quick", args.tag, args.bootstrap)
    inputs = work / "inputs"
    if not (inputs / INPUTS_FILE).exists():
        corpus = ensure_corpus(args.corpus or ROOT / "out" / "reproduce-quick", 3_000 if (args.quick or cuda) else None)
        export_inputs(corpus / "manifest.duckdb", protocol).save(inputs)
        print(f"exported {inputs}", file=sys.stderr)
    if suite_pending(inputs):  # issue 14: the suite's task data travels with the inputs (the runner has no DuckDB)
        corpus = ensure_corpus(args.corpus or ROOT / "out" / "reproduce-quick", 3_000 if (args.quick or cuda) else None)
        print(f"exported {export_suite(corpus / 'manifest.duckdb', inputs)}", file=sys.stderr)
    if cuda or args.export_only:
        rel = [
            str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p) for p in (inputs, work)
        ]
        print("on the GPU machine (no DuckDB needed; carry the inputs folder), then bring the work folder back:")
        print(f"  python bench/reproduce_runner.py --inputs {rel[0]} --work {rel[1]} --device {args.device}")
        print(f"  python bench/reproduce.py --collect {rel[1]}")
        return 0
    from reproduce_runner import run_protocol  # noqa: PLC0415 - torch, only when training

    res = attach_search_check(run_protocol(inputs, work, "cpu"), work)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"{protocol.tag}.json").write_text(json.dumps(res, indent=1, sort_keys=True, default=float))
    for line in res["verdicts"].values():
        print(line)
    print(f"wrote {render_report(DOCS, ROOT / 'docs' / 'reproduction.md')}")
    return 0


def search_check(work: Path, corpus: Path, tag: str | None, bootstrap: int | None) -> int:
    """Run the search check on `work`, add it to docs/reproduction/<tag>.json and regenerate the page."""
    if not (work / "results.json").exists():
        print(f"error: {work}: no results.json (run the protocol first: python bench/reproduce.py)", file=sys.stderr)
        return 1
    res = json.loads((work / "results.json").read_text())
    tag = tag or res["protocol"]["tag"]
    run_search_check(work, corpus / "manifest.duckdb", bootstrap=bootstrap)
    doc = DOCS / f"{tag}.json"
    res = attach_search_check(json.loads(doc.read_text()) if doc.exists() else res, work)
    DOCS.mkdir(parents=True, exist_ok=True)
    doc.write_text(json.dumps(res, indent=1, sort_keys=True, default=float))
    print("\n".join(search_check_section(res)))
    print(f"wrote {work / 'search_check.json'}, {doc} and {render_report(DOCS, ROOT / 'docs' / 'reproduction.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
