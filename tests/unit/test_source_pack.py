"""The source packer: deterministic archives, ignore rules, git mode, generated projects."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from launchq_cli.progress import PROGRESS_THRESHOLD, UploadBar
from launchq_client import source
from launchq_client.source import FIXED_MTIME, SourceError, pack


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


TREE = {
    "trainer/__init__.py": "",
    "trainer/task.py": "print('train')\n",
    "trainer/data/vocab.txt": "a\nb\n",
    "requirements.txt": "# deps\nnumpy>=1.26  # math\n\n-r other.txt\nPyYAML\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "helper.py": "X = 1\n",
}


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def _read(path: Path, member: str) -> str:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read().decode()


def test_same_tree_same_sha_across_mtimes_umask_and_creation_order(tmp_path: Path) -> None:
    first = tmp_path / "a" / "proj"
    first.mkdir(parents=True)
    _write(first, TREE)
    (first / "run.sh").chmod(0o755)
    packed_first = pack(first, tmp_path / "out1", use_git=False)

    second = tmp_path / "b" / "proj"
    second.mkdir(parents=True)
    old_umask = os.umask(0o077)  # files come out 0600 instead of 0644
    try:
        items = list(TREE.items())
        random.Random(7).shuffle(items)  # a different creation order (so directory order)
        _write(second, dict(items))
    finally:
        os.umask(old_umask)
    (second / "run.sh").chmod(0o700)
    for index, path in enumerate(sorted(second.rglob("*"))):
        os.utime(path, (1_700_000_000 + index * 977, 1_700_000_000 + index * 977))
    packed_second = pack(second, tmp_path / "out2", use_git=False)

    assert packed_first.sha256 == packed_second.sha256
    assert packed_first.path.read_bytes() == packed_second.path.read_bytes()
    assert packed_first.path.name == f"{packed_first.sha256}.tar.gz"


def test_a_changed_byte_changes_the_sha(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, TREE)
    before = pack(root, tmp_path / "out", use_git=False)
    (root / "trainer/task.py").write_text("print('trainX')\n")
    after = pack(root, tmp_path / "out", use_git=False)
    assert before.sha256 != after.sha256


def test_archive_headers_are_normalised(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, TREE)
    (root / "run.sh").chmod(0o755)
    packed = pack(root, tmp_path / "out", use_git=False)
    members = _members(packed.path)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == list(packed.listing)
    for member in members:
        assert member.isfile()
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == FIXED_MTIME
        expected = 0o755 if member.name.endswith("run.sh") else 0o644
        assert member.mode == expected, member.name
    raw = packed.path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert raw[3] & 0x08 == 0  # FNAME flag: no file name stored
    assert gzip.decompress(raw)  # and it is a valid gzip stream


def test_default_ignores_and_launchqignore(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _write(
        root,
        {
            **TREE,
            "trainer/__pycache__/task.cpython-311.pyc": "x",
            "trainer/old.pyc": "x",
            ".venv/lib/site.py": "x",
            "venv/bin/python": "x",
            ".mypy_cache/x.json": "x",
            ".pytest_cache/v": "x",
            "web/node_modules/pkg/index.js": "x",
            ".git/HEAD": "ref: refs/heads/main\n",
            "data/big.bin": "x",
            "data/keep.bin": "x",
            "notes.log": "x",
            ".launchqignore": "/data/\n!/data/keep.bin\n*.log\n",
        },
    )
    packed = pack(root, tmp_path / "out", use_git=False)
    rels = {name.split("/", 1)[1] for name in packed.listing}
    assert rels == {
        "trainer/__init__.py",
        "trainer/task.py",
        "trainer/data/vocab.txt",
        "requirements.txt",
        "run.sh",
        "helper.py",
        ".launchqignore",
        "setup.py",  # generated
    }


def test_launchqignore_can_reinclude_a_file_of_a_kept_directory(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, {"m.py": "", "cfg/a.yaml": "", "cfg/b.yaml": "", ".launchqignore": "cfg/*\n"})
    (root / ".launchqignore").write_text("cfg/*\n!cfg/b.yaml\n")
    rels = {n.split("/", 1)[1] for n in pack(root, tmp_path / "o", use_git=False).listing}
    assert "cfg/b.yaml" in rels
    assert "cfg/a.yaml" not in rels


def _git(root: Path, *args: str) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is missing: sudo apt-get install git", pytrace=False)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run([git, *args], cwd=root, check=True, capture_output=True, env=env)


def test_git_mode_packs_tracked_and_untracked_not_ignored(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    _write(
        root,
        {
            "trainer/__init__.py": "",
            "trainer/task.py": "print(1)\n",
            "gone.py": "",
            ".gitignore": "secrets.txt\nout/\n",
        },
    )
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    (root / "gone.py").unlink()  # tracked but deleted: not packed
    _write(root, {"new_module.py": "", "secrets.txt": "pw", "out/model.bin": "x"})
    _write(root, {"trainer/__pycache__/task.cpython-311.pyc": "x"})  # not ignored by git
    packed = pack(root, tmp_path / "out")
    assert packed.git
    rels = {n.split("/", 1)[1] for n in packed.listing}
    assert rels == {
        "trainer/__init__.py",
        "trainer/task.py",
        ".gitignore",
        "new_module.py",
        "setup.py",
    }


def test_git_mode_on_a_subdirectory_packs_only_that_subdirectory(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _write(root, {"other/x.py": "", "proj/trainer/__init__.py": "", "proj/trainer/task.py": ""})
    _git(root, "init", "-q")
    packed = pack(root / "proj", tmp_path / "out")
    assert packed.git
    assert {n.split("/", 1)[1] for n in packed.listing} == {
        "trainer/__init__.py",
        "trainer/task.py",
        "setup.py",
    }


def test_generated_project_installs_packages_modules_and_requirements(tmp_path: Path) -> None:
    root = tmp_path / "my proj!"
    root.mkdir()
    _write(root, TREE)
    packed = pack(root, tmp_path / "out", use_git=False)
    assert packed.generated_project
    assert packed.top == "my_proj-0.0.0"
    setup_py = _read(packed.path, "my_proj-0.0.0/setup.py")
    assert "py_modules=['helper']" in setup_py
    assert "install_requires=['numpy>=1.26', 'PyYAML']" in setup_py
    assert "find_packages()" in setup_py
    assert not (root / "setup.py").exists()  # written into the archive only

    # The generated project really builds: setuptools makes a wheel holding the package and
    # the module, with the requirements as metadata (offline, no build isolation).
    unpacked = tmp_path / "unpacked"
    with tarfile.open(packed.path, "r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(unpacked / packed.top),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        metadata = next(whl.read(n).decode() for n in names if n.endswith("METADATA"))
    assert {"trainer/task.py", "trainer/__init__.py", "helper.py"} <= names
    assert "Requires-Dist: numpy>=1.26" in metadata


def test_python_project_is_packed_as_is_under_name_version(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    root.mkdir()
    _write(
        root,
        {
            "pyproject.toml": '[project]\nname = "Fancy.Trainer"\nversion = "1.2.3"\n',
            "src/fancy/__init__.py": "",
        },
    )
    packed = pack(root, tmp_path / "out", use_git=False)
    assert not packed.generated_project
    assert packed.top == "Fancy.Trainer-1.2.3"
    assert set(packed.listing) == {
        "Fancy.Trainer-1.2.3/pyproject.toml",
        "Fancy.Trainer-1.2.3/src/fancy/__init__.py",
    }


def test_setup_py_project_with_setup_cfg_and_dynamic_version(tmp_path: Path) -> None:
    root = tmp_path / "legacy"
    root.mkdir()
    _write(
        root,
        {
            "setup.py": "from setuptools import setup\nsetup()\n",
            "setup.cfg": "[metadata]\nname = legacy-pkg\nversion = attr: legacy.__version__\n",
        },
    )
    packed = pack(root, tmp_path / "out", use_git=False)
    assert packed.top == "legacy_pkg-0.0.0"  # sdist names use `_`
    assert not packed.generated_project


def test_symlinks_inside_are_followed_outside_are_dropped(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, {"a.py": "A = 1\n"})
    (root / "b.py").symlink_to(root / "a.py")
    (root / "leak.txt").symlink_to(outside)
    (root / "broken.py").symlink_to(root / "missing.py")
    packed = pack(root, tmp_path / "out", use_git=False)
    rels = {n.split("/", 1)[1] for n in packed.listing}
    assert rels == {"a.py", "b.py", "setup.py"}
    assert _read(packed.path, "proj-0.0.0/b.py") == "A = 1\n"


def test_nothing_to_pack_and_not_a_directory_fail(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    _write(empty, {"__pycache__/x.pyc": ""})
    with pytest.raises(SourceError, match="no files"):
        pack(empty, tmp_path / "out", use_git=False)
    with pytest.raises(SourceError, match="not a directory"):
        pack(tmp_path / "missing", tmp_path / "out", use_git=False)


def test_thousand_file_tree(tmp_path: Path) -> None:
    root = tmp_path / "big"
    rng = random.Random(1)
    files = {
        f"pkg{i % 10}/mod_{i:04d}.py": f"V = {rng.random()!r}\n" * (1 + i % 5) for i in range(1000)
    }
    files.update({f"pkg{i}/__init__.py": "" for i in range(10)})
    _write(root, files)
    packed = pack(root, tmp_path / "out", use_git=False)
    assert len(packed.listing) == 1011  # + setup.py
    again = pack(root, tmp_path / "out2", use_git=False)
    assert again.sha256 == packed.sha256
    with tarfile.open(packed.path, "r:gz") as tar:
        member = tar.extractfile("big-0.0.0/pkg7/mod_0517.py")
        assert member is not None
        assert member.read().decode() == files["pkg7/mod_0517.py"]


def test_requirements_parsing(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "torch==2.3  # gpu\n# comment\n\n--extra-index-url x\n-e .\nrich\n"
    )
    assert source.read_requirements(tmp_path) == ["torch==2.3", "rich"]


def test_counting_reader_counts_and_seeks() -> None:
    import io

    seen: list[int] = []
    reader = source._CountingReader(io.BytesIO(b"abcdefgh"), seen.append)
    assert reader.read(3) == b"abc"
    assert reader.read() == b"defgh"
    reader.seek(0)
    assert reader.tell() == 0
    buffer = bytearray(4)
    assert reader.readinto(buffer) == 4
    assert bytes(buffer) == b"abcd"
    assert reader.count == 12  # re-reads after a seek are bytes handed over again
    assert seen == [3, 5, 4]


def test_progress_bar_only_for_big_uploads(capsys: pytest.CaptureFixture[str]) -> None:
    small = UploadBar(PROGRESS_THRESHOLD - 1, "small")
    with small as advance:
        advance(10)
    assert small._progress is None
    big = UploadBar(PROGRESS_THRESHOLD, "big")
    with big as advance:
        advance(PROGRESS_THRESHOLD // 2)
        (task,) = big._progress.tasks
        assert task.completed == PROGRESS_THRESHOLD // 2
        assert task.total == PROGRESS_THRESHOLD
    out, _err = capsys.readouterr()
    assert out == ""  # never on stdout, which carries item ids and --json


def test_a_module_that_is_no_file_in_the_archive_is_named_with_the_closest(
    tmp_path: Path,
) -> None:
    """`--module trainer.tsak` is found by the packer, not 5 s into the job on Vertex."""
    _write(
        tmp_path,
        {
            "trainer/__init__.py": "",
            "trainer/task.py": "",
            "tools/__main__.py": "",
            "lib/__init__.py": "",
            "src/deep/run.py": "",
            "data.csv": "",
        },
    )
    packed = pack(tmp_path, tmp_path / "out", use_git=False)
    for good in ("trainer.task", "tools", "deep.run", "src.deep.run"):
        assert source.module_problem(packed, good) is None, good
    typo = source.module_problem(packed, "trainer.tsak")
    assert typo is not None
    assert "no trainer/tsak.py or trainer/tsak/__main__.py" in typo
    assert "did you mean 'trainer.task'" in typo
    # A package without __main__ cannot be run with `python -m`: Python says so, and so do we.
    assert source.module_problem(packed, "lib") is not None
    nothing = source.module_problem(packed, "zzzzzz")
    assert nothing is not None
    assert "did you mean" not in nothing
