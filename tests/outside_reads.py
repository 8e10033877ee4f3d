"""A guard that keeps the tests inside the repository.

A fresh clone has nothing beside it, so a test that reads a file next to the repository (such
as the team's shared folder) passes here and fails there. Python's audit hook sees every file
this process opens or lists and every program it starts; this module records each path in
the repository's parent directory but not in the repository, with the test that used it, and
conftest.py fails that test (or, outside any test, the run).

Exempt: Python's own installation (a venv made from a Python under the same parent reads its
standard library there), the temp directory, and whatever this process created itself (a
clone in /tmp has its tests' temp files beside it). What the programs the tests start read is
held to the same rule by test_self_contained.py, which scans the repository's files.
"""

import getpass
import os
import sys
import tempfile

import harness


def _under(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _pytest_temp():
    """Where pytest keeps its tmp_path folders (and cleans up old ones)."""
    try:
        return os.path.join(tempfile.gettempdir(), f"pytest-of-{getpass.getuser()}")
    except (KeyError, OSError):
        return None


WATCHED = os.path.realpath(harness.ROOT.parent)
INSIDE = os.path.realpath(harness.ROOT)
EXEMPT = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                        sys.base_exec_prefix, tempfile.gettempdir(), _pytest_temp(),
                                        *sys.path) if p}
# (Not the repository itself, nor the parent or above: that would exempt everything.)
EXEMPT = sorted(p for p in EXEMPT if not _under(p, INSIDE) and not _under(WATCHED, p))
WATCHED_EVENTS = {"open", "os.mkdir", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile",
                  "shutil.copytree", "subprocess.Popen"}

_running = ["collection"]  # the node id of the test running now, or what pytest is doing
reads = []  # (what was running, audit event, path)
_created = []  # real paths of the folders and files this process created beside the repository
_in_hook = []
_installed = []


def _outside_path(path, cwd=None):
    """The real path of `path` if it is watched (beside the repository, not exempt), else None."""
    try:
        path = os.fsdecode(path)  # TypeError for a file descriptor
    except TypeError:
        return None
    real = os.path.realpath(os.path.join(os.fsdecode(cwd) if cwd else os.getcwd(), path))
    if not _under(real, WATCHED) or _under(real, INSIDE):
        return None
    if any(_under(real, p) for p in EXEMPT) or any(_under(real, p) for p in _created):
        return None
    return real


def _creates(flags):
    """Whether os.open flags create a file (O_TMPFILE: a nameless one in the folder named)."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    return bool(flags & os.O_CREAT) or bool(tmpfile and (flags & tmpfile) == tmpfile)


def _paths_read(event, args):
    """The watched paths an audit event reads; records what it creates."""
    if event == "subprocess.Popen":
        _, argv, cwd, _ = args
        argv = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv or [])
        return [_outside_path(a, cwd) for a in argv if isinstance(a, (str, bytes, os.PathLike))
                and os.sep in os.fsdecode(a)]
    path = _outside_path(args[0])
    if event == "os.mkdir" or (event == "open" and isinstance(args[2], int) and _creates(args[2])):
        # Writing, not reading (audit events come before the call: a new path is not there yet).
        # A temporary file opens its folder this way: that folder was not created here.
        if path and not os.path.lexists(path):
            _created.append(path)
        return []
    return [path]


def _audit(event, args):
    if event not in WATCHED_EVENTS or _in_hook:
        return
    _in_hook.append(event)  # realpath below must not come back in here
    try:
        reads.extend((_running[0], event, p) for p in _paths_read(event, args) if p)
    except Exception:  # an audit hook must never break what it watches
        pass
    finally:
        _in_hook.pop()


def install():
    """Start watching (once per process; audit hooks cannot be removed)."""
    if not _installed and os.path.dirname(WATCHED) != WATCHED:  # a repository at / has no "beside"
        sys.addaudithook(_audit)
        _installed.append(True)


def now_running(what):
    """Attribute what is read from now on to `what` (a test's node id, or "session")."""
    _running[0] = what


def of(running):
    """What was read beside the repository while `running` ran, one "  event path" a line."""
    return [f"  {event} {path}" for who, event, path in reads if who == running]


def stray(tests):
    """What was read beside the repository while none of `tests` (node ids) ran."""
    return [f"  {event} {path} (during {who})" for who, event, path in reads if who not in tests]
