"""The demo build with --out on S3 (a local moto S3 server through s3fs) against the same build into a local folder.

  pip install s3fs 'moto[server]'        # not in the dev extra: this bench only
  python bench/remote_out.py             # demo recipe, 300 documents per source, 4 tasks, 2 workers
  python bench/remote_out.py --limit 2000 --tasks 4 --workers 2

S3 has no rename and no listing consistency guarantees of a POSIX folder, and datatrove writes completions,
stats and logs there too: this is the closest to a user's `--out s3://bucket/corpus` that runs offline. A
moto server (`moto.server.ThreadedMotoServer`) listens on localhost; the worker processes reach it through
`FSSPEC_S3_*` environment variables (fsspec reads them at import). Printed: wall seconds of both builds,
whether the shard, validation and tokenizer files are byte-identical, `verify` over s3://, and the cluster
claim's exclusive create (an S3 conditional put, `If-None-Match: *`) refusing a second writer.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files(url: str) -> dict[str, str]:
    """{path below the corpus: sha256} of the shard, validation and tokenizer files at a path or URL."""
    import fsspec  # noqa: PLC0415 - after the environment is set

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {
        p[len(root) + 1 :]: hashlib.sha256(fs.cat_file(p)).hexdigest()
        for folder in ("shards", "validation", "tokenizer")
        for p in sorted(fs.find(f"{root}/{folder}"))
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "corpus" / "recipes" / "demo.yaml"))
    p.add_argument("--limit", type=int, default=300, help="documents per source")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    port = _free_port()
    os.environ.update(  # before anything imports fsspec: it reads FSSPEC_S3_* once, at import
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        FSSPEC_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    try:
        import s3fs  # noqa: F401, PLC0415 - optional
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional
    except ImportError as e:
        print(f"bench/remote_out.py needs s3fs and moto[server]: pip install s3fs 'moto[server]' ({e})")
        return 2
    server = ThreadedMotoServer(port=port, verbose=False)
    server.start()
    import fsspec  # noqa: PLC0415 - reads FSSPEC_S3_* at import
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from corpus import load_recipe  # noqa: PLC0415
    from manifests.verify import verify  # noqa: PLC0415
    from pipelines.build import build  # noqa: PLC0415
    from pipelines.build_config import BuildConfig  # noqa: PLC0415

    try:
        s3 = fsspec.filesystem("s3")
        s3.mkdir("demix-bench")
        recipe = load_recipe(args.recipe)
        url = "s3://demix-bench/corpus"
        walls = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, out in (("local", f"{tmp}/local"), ("s3", url)):
                cfg = BuildConfig(out=out, tasks=args.tasks, workers=args.workers, limit=args.limit)
                t0 = time.perf_counter()
                build(recipe, cfg)
                walls[name] = time.perf_counter() - t0
            local, remote = files(f"{tmp}/local"), files(url)
        report = verify(url)
        claim = "demix-bench/claim-check"
        with s3.open(claim, "xb") as f:
            f.write(b"0")
        try:
            with s3.open(claim, "xb") as f:
                f.write(b"1")
            exclusive = "no: a second writer overwrote the claim"
        except FileExistsError:
            exclusive = "yes (HTTP 412 to the second writer)"
        objects = len(s3.find("demix-bench/corpus"))
    finally:
        server.stop()
    table = Table(title=f"demo build, --limit {args.limit}, {args.tasks} tasks, {args.workers} workers")
    for col in ("", "local folder", "s3:// (moto)"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("wall s", f"{walls['local']:.1f}", f"{walls['s3']:.1f}")
    table.add_row("shard + tokenizer files", str(len(local)), str(len(remote)))
    Console().print(table)
    same = local == remote and bool(local)
    print(f"ratio s3 / local wall: {walls['s3'] / walls['local']:.2f}x")
    print(f"files byte-identical: {same}; objects under s3://demix-bench/corpus: {objects}")
    print(f"verify {url}: {'ok' if report.ok else 'FAILED'} ({report.checked} shards checked)")
    print(f"exclusive create on S3 (the cluster claim): {exclusive}")
    return 0 if same and report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
