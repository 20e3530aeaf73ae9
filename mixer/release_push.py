"""Push a release folder to a Hub dataset repo in planned, batched commits that a rerun resumes.

The Hub allows 128 commits per repository per hour, and one commit of a 22T release's tens of
thousands of files would be one upload that a dropped connection throws away. So the upload is
planned as commits of at most ``max_files`` files and ``max_bytes`` bytes, in path order with
README.md last (the card's ``configs:`` name the data files, so it lands with the last of them),
and made one commit at a time, paced to stay under the hourly limit.

Resume needs no local state: before planning, the repo's tree is listed, and a file already there
with the same size and content hash (the LFS sha256, or the git blob id for a small file) is
skipped, so a rerun after a failure uploads only what did not land. A dry run plans from the local
files alone and contacts nothing.
"""

from __future__ import annotations

import collections
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from corpus.errors import DemixError
from mixer.release_layout import ReleaseFile

COMMIT_FILES = 100
"""Files per commit (count); 100k files of a full release make 1,000 commits, about 8 hours at the Hub's limit."""
COMMIT_BYTES = 50 * 10**9
"""Bytes per commit (about 100 files of 0.5 GB); a larger file gets a commit of its own."""
HUB_COMMITS_PER_HOUR = 128
"""Commits per repository per hour the Hub allows; pushes are paced under it."""
HASH_CHUNK = 8 * 2**20  # bytes read at a time when hashing a local file: bounded memory for 20 GB files


class PushError(DemixError, RuntimeError):
    """A push that cannot start or did not finish; the message names the repo, the commit and how to resume."""


@dataclass(frozen=True)
class PushCommit:
    """One planned commit: the files it adds, in path order."""

    files: tuple[ReleaseFile, ...]

    @property
    def n_bytes(self) -> int:
        """Bytes the commit uploads."""
        return sum(f.n_bytes for f in self.files)


@dataclass(frozen=True)
class PushPlan:
    """The commits a push makes, and the files it skips because the repo already holds them."""

    repo_id: str
    revision: str | None
    commits: tuple[PushCommit, ...]
    skipped: tuple[ReleaseFile, ...]
    remote_checked: bool
    """False for a dry run: nothing was listed, so every file is planned as new."""

    @property
    def n_files(self) -> int:
        """Files to upload."""
        return sum(len(c.files) for c in self.commits)

    @property
    def n_bytes(self) -> int:
        """Bytes to upload."""
        return sum(c.n_bytes for c in self.commits)

    @property
    def min_hours(self) -> int:
        """Whole hours of waiting the commits need at least under the Hub's hourly commit limit."""
        return (len(self.commits) - 1) // HUB_COMMITS_PER_HOUR if self.commits else 0

    def message(self, i: int) -> str:
        """The commit message of commit ``i``."""
        c = self.commits[i]
        return f"mixer release: commit {i + 1}/{len(self.commits)} ({len(c.files)} files, {c.n_bytes:,} bytes)"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``): per commit its files and bytes."""
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "remote_checked": self.remote_checked,
            "n_commits": len(self.commits),
            "n_files": self.n_files,
            "bytes": self.n_bytes,
            "skipped": [f.path for f in self.skipped],
            "min_hours": self.min_hours,
            "commits": [
                {"message": self.message(i), "files": [f.path for f in c.files], "bytes": c.n_bytes}
                for i, c in enumerate(self.commits)
            ],
        }


def plan_commits(
    files: Iterable[ReleaseFile], *, max_files: int = COMMIT_FILES, max_bytes: int = COMMIT_BYTES
) -> tuple[PushCommit, ...]:
    """Cut ``files`` into commits of at most ``max_files`` files and ``max_bytes`` bytes, README.md last."""
    if max_files < 1 or max_bytes < 1:
        raise PushError(f"commits need room for a file: max_files={max_files}, max_bytes={max_bytes}")
    ordered = sorted(files, key=lambda f: (f.path == "README.md", f.path))
    commits: list[PushCommit] = []
    batch: list[ReleaseFile] = []
    for f in ordered:
        if batch and (len(batch) >= max_files or sum(b.n_bytes for b in batch) + f.n_bytes > max_bytes):
            commits.append(PushCommit(tuple(batch)))
            batch = []
        batch.append(f)
    if batch:
        commits.append(PushCommit(tuple(batch)))
    return tuple(commits)


def local_files(folder: str) -> tuple[str, list[ReleaseFile]]:
    """The local root of ``folder`` and every file under it (relative path, bytes); PushError if not local."""
    fs, root = fsspec.core.url_to_fs(folder)
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        raise PushError(f"{folder}: --push uploads from a local folder; write the release to disk first")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise PushError(f"{folder}: no such folder to push")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".cache"))  # a clone's or hub cache's own
        for name in filenames:
            if name.startswith(".tmp-"):  # a half-written file of a killed release
                continue
            path = os.path.join(dirpath, name)
            files.append(ReleaseFile(os.path.relpath(path, root).replace(os.sep, "/"), os.path.getsize(path)))
    return root, sorted(files, key=lambda f: f.path)


def plan_push(
    files: Sequence[ReleaseFile],
    repo_id: str,
    *,
    revision: str | None = None,
    remote: dict[str, Any] | None = None,
    root: str | None = None,
    max_files: int = COMMIT_FILES,
    max_bytes: int = COMMIT_BYTES,
) -> PushPlan:
    """The commit plan for ``files``; with ``remote`` (path -> the repo tree's entry) and the local ``root``,
    a file the repo already holds at the same size and hash is skipped. Without ``remote`` it is a dry run."""
    skipped, todo = [], []
    for f in files:
        entry = (remote or {}).get(f.path)
        there = entry is not None and root is not None and same_content(os.path.join(root, f.path), f.n_bytes, entry)
        (skipped if there else todo).append(f)
    return PushPlan(
        repo_id,
        revision,
        plan_commits(todo, max_files=max_files, max_bytes=max_bytes),
        tuple(skipped),
        remote_checked=remote is not None,
    )


def same_content(path: str, n_bytes: int, entry: Any) -> bool:
    """True when the repo tree ``entry`` (a RepoFile) holds the local file: same size, then same hash."""
    if int(getattr(entry, "size", -1)) != n_bytes:
        return False  # the size first: a file that differs there is never read
    lfs = getattr(entry, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    if sha256:
        return _digest(path, hashlib.sha256()) == sha256
    # a small file is a plain git blob: its id is sha1 over "blob <size>\0" and the bytes
    return _digest(path, hashlib.sha1(f"blob {n_bytes}\0".encode())) == getattr(entry, "blob_id", None)


def _digest(path: str, h: Any) -> str:
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def remote_tree(api: Any, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Every file of the repo at ``revision``: path -> its tree entry (folders left out)."""
    entries = api.list_repo_tree(repo_id=repo_id, repo_type="dataset", revision=revision, recursive=True)
    return {e.path: e for e in entries if hasattr(e, "size")}  # a RepoFolder has no size


class CommitPacer:
    """Waits before a commit when ``per_hour`` commits were made in the last hour (a sliding window)."""

    def __init__(self, per_hour: int, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.per_hour, self.clock, self.sleep = per_hour, clock, sleep
        self.times: collections.deque[float] = collections.deque()

    def wait(self) -> float:
        """Sleep until one more commit fits under the limit; returns the seconds slept."""
        now = self.clock()
        while self.times and now - self.times[0] >= 3600:
            self.times.popleft()
        waited = 0.0
        if len(self.times) >= self.per_hour:
            waited = 3600 - (now - self.times[0])
            self.sleep(waited)
            self.times.popleft()
        self.times.append(now + waited)
        return waited


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a commit raises when the Hub or the network fails (not a bug of ours): those become PushError."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


@dataclass(frozen=True)
class PushResult:
    """What a push did: the repo URL, its plan and the commits made."""

    url: str
    plan: PushPlan
    committed: int


def push_release(
    folder: str,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    api: Any = None,
    max_files: int = COMMIT_FILES,
    max_bytes: int = COMMIT_BYTES,
    commits_per_hour: int = HUB_COMMITS_PER_HOUR,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Create the dataset repo (and branch) and upload ``folder``'s files not already there, in planned commits.

    ``api`` is a ``huggingface_hub.HfApi`` (made here when None; the token comes from the usual login
    or HF_TOKEN and is never printed or passed). A failed commit raises PushError saying how many
    landed; the same call again lists the repo and uploads only the rest.
    """
    root, files = local_files(folder)
    from huggingface_hub import CommitOperationAdd  # the Hub client: only a push needs it

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    errors = _hub_errors()
    try:
        url = str(api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True))
        if revision:
            api.create_branch(repo_id=repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        remote = remote_tree(api, repo_id, revision)
    except errors as e:
        raise PushError(f"{repo_id}: cannot reach the repo: {_one_line(e)}") from None
    plan = plan_push(
        files, repo_id, revision=revision, remote=remote, root=root, max_files=max_files, max_bytes=max_bytes
    )
    pacer = CommitPacer(commits_per_hour, clock, sleep)
    for i, commit in enumerate(plan.commits):
        waited = pacer.wait()
        if progress and waited:
            progress(f"  waiting {waited:,.0f} s: the Hub allows {commits_per_hour} commits per hour")
        ops = [
            CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=os.path.join(root, f.path)) for f in commit.files
        ]
        try:
            api.create_commit(
                repo_id=repo_id, repo_type="dataset", revision=revision, operations=ops, commit_message=plan.message(i)
            )
        except errors as e:
            raise PushError(
                f"{repo_id}: commit {i + 1}/{len(plan.commits)} failed ({_one_line(e)}); {i} commit(s) "
                f"of this run landed; run the same push again to upload the rest"
            ) from None
        if progress:
            progress(f"  {plan.message(i)}")
    return PushResult(url, plan, len(plan.commits))


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
