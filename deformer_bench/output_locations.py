"""Output locations are checked before any long work (`check_output_dir`, `check_output_file`), so that a file
where a folder goes, or a read-only folder, is one clear error at the start rather than a traceback at the end; and
no output of a command may be, lie inside or hold one of its inputs (`check_distinct_paths`), whatever names the
paths are given by. files.py writes the outputs (and gives these checks to its callers too).
"""

import os
import stat
import tempfile
from pathlib import Path

from .contracts.errors import OutputLocationError
from .contracts.manifest import graph_set_source


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


def _special_kind(path: Path):
    """What `path` is when it is not a plain place for a file: a symbolic link, a device, a FIFO or a socket."""
    if path.is_symlink():
        return f"a symbolic link (to {os.readlink(path)})"
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def refuse_special_output(path, what: str = "output file") -> None:
    """An output file is written beside its target and renamed over it: over a symbolic link or a device that
    replaces the link or the device node itself (as root, `--output /dev/stdout` or `/dev/null` replaced them for
    the whole system), and never reaches what the user pointed at. Such an existing path is refused."""
    path = Path(path)
    kind = _special_kind(path)
    if kind is not None:
        raise OutputLocationError(f"{what} {path} is {kind}, not a regular file: the output would be renamed over it",
                                  "give the path of a regular file (outputs are written whole, then renamed into "
                                  "place), and copy or print it from there")


def check_output_file(path, what: str = "output file") -> None:
    """`path` can be written as a file: not a directory, a link or a device, its folder is (or can become) writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputLocationError(f"{what} {path} is a directory", "give the path of a file to write")
    if path.name in ("", ".", ".."):
        raise OutputLocationError(f"{what} {path} is not a file name", "give the path of a file to write")
    refuse_special_output(path, what)
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


def tokenizer_input(graphs, tokenizer) -> dict:
    """{what: path} of the tokenizer folder a command over a graph set reads: --tokenizer, else the model folder
    the graphs were exported from (its manifest's source), which is as much an input as a named one."""
    if tokenizer is not None:
        return {"the tokenizer directory": tokenizer}
    source = graph_set_source(graphs)
    return {f"the tokenizer directory {{}} (the model {graphs} was exported from)": source} if source else {}
