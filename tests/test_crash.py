"""Crash safety: a tiny run_train.py killed (SIGKILL) again and again, at seeded random moments and
inside its checkpoint writes and its log rewrite, then started again (with --resume when a
checkpoint exists, as a user would) ends with the parameters, working set, log and summary of an
uninterrupted run, and leaves no temporary file."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from data.files import PAUSE_ENV, TEMP_NAME
from structlearn.checkpoint import load_checkpoint
from tests.data.conftest import write_tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 48 images: 6 batches per epoch, 3 epochs per stage, a checkpoint every 2 batches
ARGS = ["--preset", "tiny", "--subjects", "S1,S5", "--pretrain-epochs", "3", "--pretrain-batch-size", "8",
        "--epochs", "3", "--batch-size", "8", "-C", "20", "-K", "3", "--checkpoint-every", "2", "--no-progress"]
# Where each kill lands, in the order the run gets there: ("write", "NAME@K") inside the K-th atomic
# write of NAME of that process (between the temporary and the rename), ("lines", n) once the log
# has n more lines than at the start (n drawn from a seeded generator).
PLAN = [("write", "checkpoint.npz@1"),    # before any checkpoint exists: the rerun is a fresh start
        ("lines", None), ("write", "log.jsonl@1"), ("write", "checkpoint.npz@2"),
        ("write", "pretrain_model.npz@1"), ("lines", None), ("write", "checkpoint.npz@3"),
        ("write", "model.npz@1")]


def _command(data, out, resume):
    return [sys.executable, os.path.join(ROOT, "run_train.py"), "--data", data, "--out", out, *ARGS] + \
        (["--resume"] if resume else [])


def _log_lines(out):
    path = os.path.join(out, "log.jsonl")
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def _run_and_kill(cmd, out, how, arg, cwd):
    """Start cmd, SIGKILL it where (how, arg) says; returns True if it was killed."""
    env = dict(os.environ, **({PAUSE_ENV: arg} if how == "write" else {}))
    start = _log_lines(out)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if how == "write":
            for line in proc.stderr:           # the hook announces the pause on stderr
                if line.startswith(PAUSE_ENV):
                    break
        else:
            deadline = time.time() + 60
            while proc.poll() is None and _log_lines(out) < start + arg and time.time() < deadline:
                time.sleep(0.002)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return killed


def _strip_times(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]


def _temporaries(out):
    return [n for n in os.listdir(out) if TEMP_NAME.match(n) or n.endswith(".tmp")]


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.h5", n_per=6, subjects=("S1", "S5"), actions=("Walking", "Eating"))
    ref, out = str(tmp_path / "ref"), str(tmp_path / "killed")
    subprocess.run(_command(data, ref, False), cwd=tmp_path, check=True, capture_output=True)
    rng = random.Random(13)
    kills = 0
    for how, arg in PLAN:
        resume = os.path.exists(os.path.join(out, "checkpoint.npz"))
        arg = rng.randint(1, 4) if how == "lines" else arg
        assert _run_and_kill(_command(data, out, resume), out, how, arg, tmp_path), (how, arg)
        kills += 1
        if how == "write":
            assert _temporaries(out), (how, arg)    # killed inside the write: its temporary is there
        if os.path.exists(os.path.join(out, "checkpoint.npz")):
            load_checkpoint(os.path.join(out, "checkpoint.npz"))      # never torn
        _strip_times(out)                                               # every line whole
    assert kills == len(PLAN)
    proc = subprocess.run(_command(data, out, True), cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    assert _temporaries(out) == []
    assert _strip_times(out) == _strip_times(ref)
    for name in ("pretrain_model.npz", "model.npz", "checkpoint.npz"):
        a, _, arrays_a = load_checkpoint(os.path.join(ref, name))
        b, _, arrays_b = load_checkpoint(os.path.join(out, name))
        assert list(a) == list(b) and list(arrays_a) == list(arrays_b), name
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} {k}")
        for k in arrays_a:                                          # the working set
            np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=f"{name} {k}")
    summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in (ref, out)]
    assert summaries[0] == summaries[1]


def test_a_fresh_run_starts_a_fresh_log_and_removes_stale_temporaries(tmp_path, capsys):
    # what a kill before the first checkpoint leaves: log lines and a temporary; the same command
    # again (without --resume) must not append to that log
    import run_train
    data = write_tiny_dataset(tmp_path / "tiny.h5", n_per=6, subjects=("S1", "S5"), actions=("Walking", "Eating"))
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"stage": "pretrain", "epoch": 0, "batch": 0, "cost": -1}\n{"stage": "pre')
    (out / ".tmp-0123456789abcdef.npz").write_bytes(b"torn")
    (out / "notes.tmp").write_text("not ours")
    old = os.umask(0o022)
    try:
        assert run_train.main(["--data", data, "--out", str(out), *ARGS]) == 0
    finally:
        os.umask(old)
    rows = _strip_times(out)
    assert rows[0]["cost"] != -1 and len(rows) == 36
    assert _temporaries(out) == ["notes.tmp"]
    for name in ("checkpoint.npz", "model.npz", "pretrain_model.npz", "log.jsonl", "config.json"):
        assert os.stat(out / name).st_mode & 0o777 == 0o644, name
