"""Files appear whole or not at all: write beside the target, then rename over it (atomic on one filesystem).

Staging names carry the writer's process id (`.NAME.partial-PID-...`, `.NAME.replaced-PID`), so that the
next writer of the same target can tell the leftovers of a killed process (its PID is gone) from the work
of a live one, and clean them up: a staging copy is removed, and an old directory moved aside by a
replacement that was killed mid-swap is put back where it was.

Output locations are checked before any long work (`check_output_file`, `check_output_dir`,
`check_distinct_paths`): output_locations.py. Callers import those checks from here too, one module for a
command's outputs; a staging file refuses a special target with them.
"""

import contextlib
import datetime
import errno
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from .contracts.errors import DISK_FULL_ERRNOS, DiskFullError, OutputExistsError, OutputLocationError
from .output_locations import (check_distinct_paths, check_output_dir, check_output_file, describe_obstacle,
                               refuse_special_output, tokenizer_input)

__all__ = ["RESULTS_NAME_MAX", "check_distinct_paths", "check_output_dir", "check_output_file", "clean_stale_staging",
           "command_line", "describe_obstacle", "new_results_folder", "refuse_special_output", "save_figure_atomically",
           "scratch_directory", "staged_directory", "tokenizer_input", "unlisted_entries", "write_text_atomically",
           "write_texts_atomically"]

_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|replaced)-(?P<pid>\d+)(-.*)?$")


# Staging paths this process is writing now: with our own PID on a leftover (PID 1 in every container run,
# or a reused PID), only these are alive; any other is a dead process's.
_LIVE = set()


def _stale(entry: Path, pid: int) -> bool:
    """True when the process `pid` that named `entry` is gone (or it is our PID on a path we are not writing)."""
    if pid == os.getpid():
        return entry not in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False  # another user's process, or not a PID at all: leave it alone
    return False


def _remove(path: Path) -> bool:
    """Remove a file or a folder; True if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
    return not (path.exists() or path.is_symlink())


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def clean_stale_staging(target: Path) -> list:
    """Remove what killed writers of `target` left beside it; returns the paths acted on.

    A `.NAME.replaced-PID` of a dead process while `target` is missing is the old output, moved aside just
    before the kill: it is renamed back to `target` (nothing lost), not removed.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    acted = []
    for entry in sorted(parent.iterdir()):
        match = _STAGING.match(entry.name)
        if not match or match["name"] != target.name or not _stale(entry, int(match["pid"])):
            continue
        if match["kind"] == "replaced" and not target.exists() and not target.is_symlink():
            entry.rename(target)
            _note(f"restored {target} from {entry.name}, moved aside by an interrupted replacement")
            acted.append(entry)
        elif _remove(entry):
            _note(f"removed {entry}, left by an interrupted run (process {match['pid']} is gone)")
            acted.append(entry)
    return acted


def _staging_file(path: Path) -> Path:
    """The staging name beside `path` (its folder created), after removing what a dead writer of it left."""
    if path.is_dir():
        raise OutputLocationError(f"{path} is a directory", "give the path of a file to write")
    refuse_special_output(path, "the output")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def write_text_atomically(path: Path, text: str) -> None:
    write_texts_atomically({path: text})


def write_texts_atomically(texts: dict) -> None:
    """{path: text}: every file staged first, then all renamed into place, so that a full disk while staging
    leaves none of them (not the first written and the second missing). Parent folders are created."""
    staged = []
    try:
        for path, text in texts.items():
            path = Path(path)
            staging = _staging_file(path)
            staged.append((staging, path))
            try:
                staging.write_text(text, encoding="utf-8")
            except OSError as error:  # name the file the user asked for, not our staging name
                raise OSError(error.errno, error.strerror, str(path)) from None
        for staging, path in staged:
            staging.replace(path)
    except BaseException:
        for staging, _ in staged:
            with contextlib.suppress(OSError):
                staging.unlink()
        raise


def save_figure_atomically(figure, path: Path) -> None:
    """A matplotlib figure saved as PNG beside `path`, then renamed over it."""
    path = Path(path)
    staging = _staging_file(path)
    try:
        figure.savefig(staging, dpi=110, format="png")
        staging.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise


def unlisted_entries(directory: Path, listed: set) -> list:
    """What lies under `directory`, at any depth, that `listed` (relative POSIX paths) does not name, sorted; a
    symbolic link is never taken as listed (we write none), and an unlisted folder is named, not entered."""
    def refuse_unreadable(error):
        raise error

    found = []
    for root, folders, files in os.walk(directory, onerror=refuse_unreadable):
        base = Path(root).relative_to(directory)
        ours = []
        for name in folders + files:
            relative = (base / name).as_posix()
            if relative in listed and not (Path(root) / name).is_symlink():
                ours.append(name)
            else:
                found.append(relative)
        folders[:] = [name for name in folders if name in ours]
    return sorted(found)


def _remove_listed(directory: Path, listed: set, out_dir: Path) -> None:
    """Remove exactly the `listed` entries of `directory`, then the folder; what else turned up in it (written
    there during the swap) is kept, under a name the stale-staging cleaner does not touch."""
    for relative in sorted(listed, key=lambda name: name.count("/"), reverse=True):  # files before their folders
        path = directory / relative
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
    try:
        directory.rmdir()
    except OSError:
        kept = out_dir.with_name(f"{out_dir.name}.kept-{os.getpid()}")
        directory.rename(kept)
        _note(f"the old {out_dir} held files it did not list: they are kept in {kept}")


@contextlib.contextmanager
def staged_directory(out_dir: Path, replace: bool = False, listed=None):
    """Yield an empty directory beside `out_dir`; renamed to `out_dir` if the block succeeds, else removed.

    With `replace`, an existing `out_dir` is moved aside first and removed only once the new one is in place,
    so a failure at any point leaves either the old directory or the new one, never a mix (and a kill in the
    middle of the swap is undone by the next writer: clean_stale_staging). With `listed` (a function of the old
    directory giving the relative paths the writer owns there), the old one is checked again once moved aside,
    and put back untouched if anything else is in it (written there since the writer's own check); then only
    the listed paths are removed.
    """
    out_dir = Path(os.path.abspath(out_dir))  # '.' and '..' get a name; symbolic links are not followed
    made = missing_folders(out_dir.parent)  # removed again if the block fails: a failed run leaves no empty root
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out_dir)
    if not replace and (out_dir.exists() or out_dir.is_symlink()):
        raise OutputExistsError(f"{out_dir} already exists", "give a new path")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    _LIVE.add(staging)
    done = False
    try:
        try:
            yield staging
        except OSError as error:
            if error.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(f"the disk filled up while writing {out_dir} ({error.strerror})",
                                    f"free space on the disk of {out_dir.parent}, or write elsewhere; "
                                    "nothing half-written was kept") from None
            raise
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700: the output gets the usual permissions
        if replace and (out_dir.exists() or out_dir.is_symlink()):
            _swap_in(staging, out_dir, listed)
        else:
            try:
                staging.rename(out_dir)
            except OSError as error:
                if error.errno in (errno.ENOTEMPTY, errno.EEXIST) or out_dir.exists():
                    raise OutputExistsError(f"{out_dir} was written by another process meanwhile",
                                            "use it, or give a new path") from None
                raise
        done = True
    finally:
        _LIVE.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            remove_empty_folders(made)


def missing_folders(folder: Path) -> list:
    """The folders of `folder`'s path that do not exist yet, deepest first: what a mkdir(parents=True) would make."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def remove_empty_folders(folders: list) -> None:
    """Remove `folders` (deepest first), each only while empty: another writer's files in one keep it and those
    above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _swap_in(staging: Path, out_dir: Path, listed=None) -> None:
    """Move the old `out_dir` aside, the new one in, then remove the old; a failure (or Ctrl-C) between the two
    renames puts the old one back. With `listed`, only what it names of the old one is removed (see
    staged_directory); a symbolic link `out_dir` is replaced itself, what it points to is left alone."""
    aside = Path(tempfile.mktemp(prefix=f".{out_dir.name}.replaced-{os.getpid()}-", dir=out_dir.parent))
    _LIVE.add(aside)
    try:
        out_dir.rename(aside)
        owned = None
        try:
            if listed is not None and not aside.is_symlink():
                owned = listed(aside)
                others = unlisted_entries(aside, owned)
                if others:
                    raise OutputLocationError(f"{out_dir / others[0]} appeared while {out_dir} was being written, and "
                                              f"is not {out_dir}'s own: nothing was replaced",
                                              "move it out of the way and run the command again")
            staging.rename(out_dir)
        except BaseException:
            aside.rename(out_dir)
            raise
        if owned is None:
            _remove(aside)
        else:
            _remove_listed(aside, owned, out_dir)
    finally:
        _LIVE.discard(aside)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_SCRATCH = re.compile(r"^(?P<prefix>deformer-[a-z-]+-)(?P<pid>\d+)-[^/]*$")


@contextlib.contextmanager
def scratch_directory(prefix: str, root=None):
    """A temporary directory (in `root`, default TMPDIR) named `PREFIX-PID-...`, removed afterwards. Those a killed
    process left (a SIGKILLed evaluation leaves its temporary passage cache: 800 MB for the SQuAD dev set) are
    removed by the next run that uses the same prefix and root."""
    if not _SCRATCH.match(f"{prefix}0-x"):
        raise ValueError(f"scratch prefix {prefix!r} must look like 'deformer-name-'")
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    for entry in root.glob(f"{prefix}*"):
        match = _SCRATCH.match(entry.name)
        if match and match["prefix"] == prefix and _stale(entry, int(match["pid"])) and _remove(entry):
            _note(f"removed {entry}, left by an interrupted run (process {match['pid']} is gone)")
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=root) as scratch:
        _LIVE.add(Path(scratch))
        try:
            yield scratch
        finally:
            _LIVE.discard(Path(scratch))


RESULTS_NAME_MAX = 60  # a results folder's name, to be read and typed by a person
_COUNTER_ROOM = 3  # "-nn": the counter that tells one day's runs apart fits without cutting the name again


def new_results_folder(root: Path, profile_name: str, model: str) -> Path:
    """A new results folder `<date>-<profile>-<model>[-<n>]` under root, at most RESULTS_NAME_MAX characters, never
    an existing one (`-2`, `-3`, ... after the first). `model` names what was measured, not how: variants, batch
    sizes and lengths go inside the report, so that a run's name says which model and profile on which day."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{profile_name}-{model}").strip("-").lower()
    base = f"{stamp}-{slug}"[:RESULTS_NAME_MAX - _COUNTER_ROOM].rstrip("-")
    candidate, counter = root / base, 1
    while candidate.exists() or candidate.is_symlink():
        counter += 1
        suffix = f"-{counter}"
        candidate = root / (base[:RESULTS_NAME_MAX - len(suffix)].rstrip("-") + suffix)
    return candidate


def command_line(*words) -> str:
    """A command a user can paste into a shell from any directory: paths made absolute, words quoted as needed.
    Path words are given as pathlib.Path; None words are left out."""
    return shlex.join(os.path.abspath(word) if isinstance(word, Path) else str(word)
                      for word in words if word is not None)
