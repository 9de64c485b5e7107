import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "device-tree.sh"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def script(repo, *args):
    return subprocess.run(["bash", str(repo / "scripts" / "device-tree.sh"), *args], capture_output=True, text=True,
                          cwd=repo)


def test_slim_keeps_the_models_out_of_what_travels_and_restore_undoes_it(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    (repo / "reference" / "student").mkdir(parents=True)
    (repo / "reference" / "student" / "model.safetensors").write_bytes(b"\1" * (65 * 1024 * 1024))
    (repo / "code.py").write_text("print(1)\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")

    assert "65 MiB" in script(repo, "size").stdout
    slim = script(repo, "slim")
    assert slim.returncode == 0, slim.stderr
    assert "the working tree that travels: 0 MiB" in slim.stdout
    assert "reference/" not in git(repo, "ls-files", "--cached", "--others", "--exclude-standard")
    assert (repo / "reference" / "student" / "model.safetensors").stat().st_size == 65 * 1024 * 1024
    assert script(repo, "slim").stdout.startswith("already slim")
    # while slim, a commit is refused (it would record reference/ as deleted)
    (repo / "code.py").write_text("print(2)\n")
    git(repo, "add", "code.py")
    commit = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y"],
                            capture_output=True, text=True)
    assert commit.returncode != 0 and "device-tree.sh restore" in commit.stderr
    git(repo, "reset", "-q", "code.py")
    (repo / "code.py").write_text("print(1)\n")

    restore = script(repo, "restore")
    assert restore.returncode == 0, restore.stderr
    assert "65 MiB" in restore.stdout
    assert git(repo, "status", "--porcelain") == ""
    assert "device-tree" not in (repo / ".git/info/exclude").read_text()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert script(repo, "restore").stdout.startswith("not slim")
    # from another directory, the script acts on its own repository
    elsewhere = subprocess.run(["bash", str(repo / "scripts" / "device-tree.sh"), "size"], capture_output=True,
                               text=True, cwd=tmp_path)
    assert elsewhere.returncode == 0 and "65 MiB" in elsewhere.stdout
    # a tracked file deleted from the disk (listed, not there) does not break the count
    (repo / "code.py").unlink()
    deleted = script(repo, "size")
    assert deleted.returncode == 0 and "65 MiB" in deleted.stdout


def test_slim_refuses_staged_model_changes(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    git(repo, "init", "-q")
    (repo / "reference").mkdir()
    (repo / "reference" / "new.json").write_text("{}")
    git(repo, "add", "reference/new.json")
    slim = script(repo, "slim")
    assert slim.returncode == 2 and "staged changes" in slim.stderr
    assert "reference/new.json" in git(repo, "ls-files")
