"""Writing the project's output files: atomically (atomic_write, write_text_atomic, save_figure), by
appending (append_text), and cleaning up after a kill (remove_stale_temporaries). Here, at the bottom of the
dependency chain, so that every package writes the same way.

An atomic write goes through a temporary file beside the target and a rename, so a crash never
leaves a torn file; the temporaries a kill leaves behind match TEMP_NAME. New files get the mode
0666 less the umask, as any file the user makes. Every OSError of these functions names the path
it could not write (named_error).
"""
import os
import re
import secrets
import sys
import time

TEMP_PREFIX = ".tmp-"
# what atomic_write names its temporaries (and the mkstemp names of earlier versions: 8 characters)
TEMP_NAME = re.compile(r"^\.tmp-[a-z0-9_]{8,}\.[A-Za-z0-9]{1,10}$")
# Tests only: "NAME@K" pauses the K-th atomic write of a file named NAME in this process between
# writing the temporary and renaming it (after a line on stderr), so a test can kill it there.
PAUSE_ENV = "STRUCTNET_TEST_PAUSE_WRITE"
_writes = {}


def os_reason(err, path, *own):
    """Why OSError err stopped the writing of path, as text. A culprit other than path and the
    writer's own temporaries (`own`) is named: a parent that is not a directory, say."""
    culprit = os.fspath(err.filename) if err.filename is not None else ""
    reason = err.strerror or str(err)
    if isinstance(err, FileExistsError) and culprit and not os.path.isdir(culprit):
        reason = "not a directory"      # os.makedirs met a file where a folder should be
    ours = {os.fspath(path), *map(os.fspath, own)}
    if culprit and culprit not in ours and not os.path.basename(culprit).startswith(TEMP_PREFIX):
        reason = f"{reason}: {culprit}"
    return reason


def named_error(err, path):
    """OSError err as one naming path, the file the caller could not write."""
    return OSError(err.errno, os_reason(err, path), os.fspath(path))


def _create_temporary(directory, path):
    suffix = os.path.splitext(path)[1]
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ".tmp"
    while True:
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}")
        try:
            # mode 0666 less the umask, as for any new file (mkstemp would give 0600)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _pause_for_tests(path):
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    name, _, k = wanted.partition("@")
    if os.path.basename(path) != name:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if _writes[name] == int(k or 1):
        print(f"{PAUSE_ENV}: writing {path}", file=sys.stderr, flush=True)
        time.sleep(120)


def atomic_write(path, write, binary=True):
    """Write path through write(f), f a file opened on a temporary beside it ("wb", or "w" for
    text), then fsync and rename: readers see the old file or the new one, never a torn one.
    The directory is made if missing. OSError names path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = _create_temporary(directory, path)
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _pause_for_tests(path)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise named_error(err, path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def save_figure(fig, path, **savefig):
    """Write a matplotlib figure to path atomically (the format from the suffix, PNG without one)
    and close it. Returns path."""
    import matplotlib.pyplot as plt     # loaded already: fig is a figure
    try:
        kind = os.path.splitext(os.fspath(path))[1][1:] or "png"
        atomic_write(path, lambda f: fig.savefig(f, format=kind, **savefig))
    finally:
        plt.close(fig)
    return path


def write_text_atomic(path, text):
    """Write text to path atomically (atomic_write)."""
    atomic_write(path, lambda f: f.write(text), binary=False)


def append_text(path, text):
    """Append text to path (made if missing); OSError names path."""
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as err:
        raise named_error(err, path) from None


def remove_stale_temporaries(directory):
    """Delete the temporaries of atomic writes that a kill left in directory (names matching
    TEMP_NAME only). Returns their names."""
    try:
        names = sorted(n for n in os.listdir(directory) if TEMP_NAME.match(n))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    return names
