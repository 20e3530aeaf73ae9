"""Release push: batched commits, resume after a failed commit, pacing under the Hub's hourly limit, the dry-run plan.

No network: a fake HfApi is injected into push_release; it keeps the repo's files as the Hub lists them
(size, LFS sha256 for Parquet, git blob id for small files) and records every commit.
"""

from __future__ import annotations

import hashlib
import json
import math
from types import SimpleNamespace

import pytest

from mixer.cli import main
from mixer.release import list_release, write_release
from mixer.release_layout import ReleaseFile
from mixer.release_push import CommitPacer, PushError, plan_commits, push_release


class FakeHub:
    """A dataset repo as HfApi shows it: list_repo_tree entries and create_commit, with an injected failure."""

    def __init__(self, fail_at: int | None = None):
        self.files: dict[str, SimpleNamespace] = {}
        self.commits: list[tuple[str, list[str]]] = []
        self.calls: list[str] = []
        self.fail_at = fail_at

    def create_repo(self, **k):
        self.calls.append("create_repo")
        assert k == {"repo_id": "org/tiny", "repo_type": "dataset", "private": True, "exist_ok": True}
        return "https://huggingface.co/datasets/org/tiny"

    def create_branch(self, **k):
        self.calls.append("create_branch")

    def list_repo_tree(self, **k):
        self.calls.append("list_repo_tree")
        assert k["recursive"] and k["repo_type"] == "dataset"
        return [SimpleNamespace(path="data", tree_id="x"), *self.files.values()]  # a folder has no size

    def create_commit(self, *, repo_id, repo_type, revision, operations, commit_message):
        self.calls.append("create_commit")
        if self.fail_at is not None and len(self.commits) + 1 == self.fail_at:
            raise ConnectionError("connection reset by peer")
        for op in operations:
            data = open(op.path_or_fileobj, "rb").read()
            lfs = (
                SimpleNamespace(sha256=hashlib.sha256(data).hexdigest())
                if op.path_in_repo.endswith(".parquet")
                else None
            )  # the Hub keeps Parquet in LFS
            blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            self.files[op.path_in_repo] = SimpleNamespace(path=op.path_in_repo, size=len(data), blob_id=blob, lfs=lfs)
        self.commits.append((commit_message, [op.path_in_repo for op in operations]))


@pytest.fixture(scope="module")
def many_files(tiny_plan, tmp_path_factory):
    """A release of about 30 files (small files), so commits of 4 files make several."""
    out = tmp_path_factory.mktemp("push") / "rel"
    write_release(tiny_plan, str(out), mixture_max_tokens=6_000, samples=[2_000], file_tokens=40 * tiny_plan.seq_len)
    return out


def test_files_go_in_batched_commits_with_the_card_last(many_files):
    hub = FakeHub()
    done = push_release(str(many_files), "org/tiny", private=True, revision="v1", api=hub, max_files=4)
    local = {f.path for f in list_release(str(many_files))}
    assert len(local) > 20
    assert len(hub.commits) == math.ceil(len(local) / 4) == done.committed
    assert all(len(paths) <= 4 for _, paths in hub.commits)
    uploaded = [p for _, paths in hub.commits for p in paths]
    assert sorted(uploaded) == sorted(local)  # every file once
    assert hub.commits[-1][1][-1] == "README.md"  # the card's configs name the data: it lands last
    assert hub.commits[0][0].startswith(f"mixer release: commit 1/{len(hub.commits)} (4 files")
    assert hub.calls[:3] == ["create_repo", "create_branch", "list_repo_tree"]


def test_commits_respect_the_byte_budget_and_a_big_file_goes_alone():
    files = [ReleaseFile(p, n) for p, n in (("README.md", 10), ("a", 60), ("b", 60), ("c", 30), ("d", 200))]
    commits = plan_commits(files, max_files=10, max_bytes=100)
    assert [[f.path for f in c.files] for c in commits] == [["a"], ["b", "c"], ["d"], ["README.md"]]


def test_a_push_after_a_failed_commit_uploads_only_the_rest(many_files):
    hub = FakeHub(fail_at=3)
    with pytest.raises(
        PushError,
        match=r"org/tiny: commit 3/\d+ failed \(connection reset by peer\); 2 commit\(s\) "
        r"of this run landed; run the same push again",
    ):
        push_release(str(many_files), "org/tiny", private=True, api=hub, max_files=4)
    landed = {p for _, paths in hub.commits for p in paths}
    assert len(landed) == 8
    hub.fail_at = None
    again = push_release(str(many_files), "org/tiny", private=True, api=hub, max_files=4)
    second = [p for _, paths in hub.commits[2:] for p in paths]
    local = {f.path for f in list_release(str(many_files))}
    assert {f.path for f in again.plan.skipped} == landed  # found on the repo at the same size and hash
    assert not landed & set(second) and landed | set(second) == local
    assert again.plan.commits[0].files[0].path == min(local - landed, key=lambda p: (p == "README.md", p))
    # a third push finds everything there: LFS sha256 for Parquet, git blob ids for small files
    n = len(hub.commits)
    assert push_release(str(many_files), "org/tiny", private=True, api=hub).committed == 0 and len(hub.commits) == n


def test_a_changed_file_of_the_same_size_is_uploaded_again(many_files, tmp_path):
    import shutil

    folder = shutil.copytree(many_files, tmp_path / "rel")
    hub = FakeHub()
    push_release(str(folder), "org/tiny", private=True, api=hub)
    card = (folder / "README.md").read_bytes()
    (folder / "README.md").write_bytes(card.replace(b"DeMix", b"Demix", 1))  # same size, other bytes
    again = push_release(str(folder), "org/tiny", private=True, api=hub)
    assert [f.path for c in again.plan.commits for f in c.files] == ["README.md"]


def test_commits_are_paced_under_the_hourly_limit(many_files):
    now = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    done = push_release(
        str(many_files),
        "org/tiny",
        private=True,
        api=FakeHub(),
        max_files=6,
        commits_per_hour=2,
        clock=lambda: now[0],
        sleep=sleep,
    )
    n = done.committed
    assert n >= 5 and slept == [3600.0] * ((n - 1) // 2)  # two commits per window, then wait out the hour
    ticks: list[float] = []
    pacer = CommitPacer(2, clock=lambda: 100.0, sleep=ticks.append)  # a clock that stands still: the third waits
    assert [pacer.wait() for _ in range(3)] == [0.0, 0.0, 3600.0] and ticks == [3600.0]


def test_cli_dry_run_prints_the_commit_plan_and_touches_nothing(tiny_plan, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    class Forbidden:
        def __init__(self, *a, **k):
            raise AssertionError("--dry-run must not touch the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", Forbidden)
    tiny_plan.save(tmp_path / "plan.json")
    out = tmp_path / "rel"
    args = [
        "release",
        "--plan",
        str(tmp_path / "plan.json"),
        "--out",
        str(out),
        "--mixture-max-tokens",
        "6K",
        "--file-tokens",
        str(40 * tiny_plan.seq_len),
        "--push",
        "org/x",
        "--commit-files",
        "5",
        "--dry-run",
    ]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not out.exists()  # a dry run writes nothing
    planned = [f["path"] for f in result["files"]]
    push = result["push"]
    assert push["n_commits"] == math.ceil(len(planned) / 5) and not push["remote_checked"]
    assert sorted(p for c in push["commits"] for p in c["files"]) == sorted(planned)
    assert push["commits"][-1]["files"][-1] == "README.md"
    assert result["bytes"] > 0  # upper estimates, so the byte budget plans something
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "commit plan for org/x" in printed and f"{push['n_commits']} commit(s) of at most 5 files" in printed
    assert "was not contacted" in printed and not out.exists()


def test_cli_push_writes_then_uploads_through_hfapi(tiny_plan, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: hub if not (a or k) else None)  # no token passed
    tiny_plan.save(tmp_path / "plan.json")
    out = tmp_path / "rel"
    assert (
        main(
            [
                "release",
                "--plan",
                str(tmp_path / "plan.json"),
                "--out",
                str(out),
                "--mixture-max-tokens",
                "2K",
                "--push",
                "org/tiny",
                "--private",
                "--commit-files",
                "3",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["pushed"] == "https://huggingface.co/datasets/org/tiny"
    assert sorted(hub.files) == sorted(f.path for f in list_release(str(out)))
    assert len(hub.commits) == result["push"]["n_commits"] == math.ceil(len(hub.files) / 3)
