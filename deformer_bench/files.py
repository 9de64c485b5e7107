"""Files appear whole or not at all: write beside the target, then rename over it (atomic on one filesystem).

Staging names carry the writer's process id (`.NAME.partial-PID-...`, `.NAME.replaced-PID`), so that the
next writer of the same target can tell the leftovers of a killed process (its PID is gone) from the work
of a live one, and clean them up: a staging copy is removed, and an old directory moved aside by a
replacement that was killed mid-swap is put back where it was.

Output locations are checked before any long work (`check_output_file`, `check_output_dir`), so that a
file where a folder goes, or a read-only folder, is one clear error at the start rather than a traceback
at the end.
"""

import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import DISK_FULL_ERRNOS, DiskFullError, OutputExistsError, OutputLocationError

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


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in `folder`: the one test that read-only mounts and ACLs cannot fool."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".deformer-write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputLocationError(f"{what}: cannot write in {folder}: {error.strerror or error}",
                                  "choose a location you can write to") from None


def _nearest_existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            return folder
    return Path.cwd()


def describe_obstacle(path: Path, existing: Path) -> str:
    """What stands where a folder `path` should be: `existing`, the nearest thing that is there, not a folder."""
    if existing.is_symlink() and not existing.exists():
        kind = f"a broken symbolic link (to {os.readlink(existing)}, which does not exist)"
    else:
        kind = "a file"
    return f"is {kind}" if existing == path else f"has {kind} in the way: {existing}"


def check_output_dir(path, what: str = "output directory") -> None:
    """`path` is, or can become, a directory we can write in; nothing is created."""
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputLocationError(f"{what} {path} {describe_obstacle(path, existing)}", "give a directory path")
    _probe_writable(existing, f"{what} {path}")


def check_output_file(path, what: str = "output file") -> None:
    """`path` can be written as a file: not a directory, its folder is (or can become) writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputLocationError(f"{what} {path} is a directory", "give the path of a file to write")
    if path.name in ("", ".", ".."):
        raise OutputLocationError(f"{what} {path} is not a file name", "give the path of a file to write")
    check_output_dir(path.parent, f"the folder of {what} {path}")


def _real_places(path) -> set:
    """Where writing `path` can land, every symbolic link followed: the path itself resolved (a write through a
    link reaches its target), and its folder resolved with its own name kept (a rename replaces a link, not what
    it points to; `staged_directory` names its target with '..' taken lexically)."""
    places = {Path(os.path.realpath(path))}
    for parent, name in ((Path(path).parent, Path(path).name), (Path(os.path.abspath(path)).parent,
                                                                Path(os.path.abspath(path)).name)):
        if name not in ("", ".", ".."):
            places.add(Path(os.path.realpath(parent)) / name)
    return places


def _identity(path):
    """(device, inode) of what `path` names, links followed; None when there is nothing there."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def _identities_up(path: Path) -> set:
    """The identities of `path` and of every existing folder above it: a bind mount, a hard-linked folder or a
    case-insensitive file system can show one folder under two names, which comparing names would miss."""
    return {identity for folder in (path, *path.parents) if (identity := _identity(folder)) is not None}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _relation(output, source):
    """How `output` meets `source`: "would overwrite" (the same path), "lies inside", "holds", or None when
    they are apart."""
    source_real = Path(os.path.realpath(source))
    source_identity = _identity(source_real)
    for place in _real_places(output):
        if place == source_real or (source_identity is not None and source_identity == _identity(place)):
            return "would overwrite"
        if _inside(place, source_real) or (source_identity is not None and source_identity in _identities_up(place)):
            return "lies inside"
        place_identity = _identity(place)
        if _inside(source_real, place) or (place_identity is not None
                                           and place_identity in _identities_up(source_real)):
            return "holds"
    return None


def check_distinct_paths(outputs: dict, inputs: dict, roots=()) -> None:
    """The one rule for every command's paths: no output (`{option: path}`, None skipped) is, lies inside or
    holds one of the command's inputs (`{what: path}`: every file or folder it reads, named or found by default,
    such as the tokenizer folder a graph set's manifest names; a "{}" in `what` places the path), whether the
    output exists yet or not; and no two outputs overlap. Symbolic links, '.', '..', relative paths and other
    names of the same folder are seen through. `roots` names outputs that are folders the command only adds a new
    entry of its own to (such as deformer-bench's results root): they may hold inputs, not be or lie inside one.
    Raises OutputLocationError naming both paths."""
    given = {name: path for name, path in outputs.items() if path is not None}
    for name, path in given.items():
        for what, source in inputs.items():
            if source is None:
                continue
            relation = _relation(path, source)
            if relation is not None and not (relation == "holds" and name in roots):
                input_named = what.replace("{}", str(source)) if "{}" in what else f"{what} {source}"
                raise OutputLocationError(f"{name} {path} {relation} {input_named}, which this command reads",
                                          f"give {name} a path outside what the command reads")
    names = [name for name in given if name not in roots]  # a root holds the outputs made in it
    for index, name in enumerate(names):
        for other in names[index + 1:]:
            if _relation(given[name], given[other]) is not None:
                raise OutputLocationError(f"{name} {given[name]} and {other} {given[other]} overlap (one is, or "
                                          "lies inside, the other)", "give each output a path of its own")


def _staging_file(path: Path) -> Path:
    """The staging name beside `path` (its folder created), after removing what a dead writer of it left."""
    if path.is_dir():
        raise OutputLocationError(f"{path} is a directory", "give the path of a file to write")
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
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out_dir)
    if not replace and (out_dir.exists() or out_dir.is_symlink()):
        raise OutputExistsError(f"{out_dir} already exists", "give a new path")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    _LIVE.add(staging)
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
    finally:
        _LIVE.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)


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
