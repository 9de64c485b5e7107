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

    restore = script(repo, "restore")
    assert restore.returncode == 0, restore.stderr
    assert "65 MiB" in restore.stdout
    assert git(repo, "status", "--porcelain") == "" and "device-tree" not in (repo / ".git/info/exclude").read_text()


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
