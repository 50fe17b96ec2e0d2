"""Data-parallel training and sharded evaluation over MPI (nn.comm, docs/mpi.md): N = 2 processes
under mpiexec against one process, at the same global batch. Each test launches mpiexec itself
(the `mpi` extra: mpi4py and the mpich wheel's mpiexec); without them they skip.

Equal means: the same chosen line-search steps, working-set sizes and violated shares, the other
log values and the parameters within 1e-5 relative in float32 (the reductions reorder sums) and
within 1e-10 in float64 (tests/mpi_driver.py --float64), and the same evaluation tables."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.data.conftest import write_tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN + os.pathsep + os.environ.get("PATH", ""))
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not (MPIEXEC and HAVE_MPI4PY), reason="needs mpi4py and mpiexec (the mpi extra)")
TRAIN = ["--preset", "tiny", "--subjects", "S1,S5", "--pretrain-epochs", "2", "--pretrain-batch-size", "8",
         "--epochs", "2", "--batch-size", "8", "-C", "20", "-K", "3", "--no-progress",
         "--optimizer", "linesearch", "--dropout", "0.5"]     # the paper's rules, with dropout masks
EVAL = ["--subjects", "S1,S5", "--mode", "max,avg,pred,apf,ik", "--A", "5", "--best-of", "1,5,50", "--no-progress",
        "--train-images", "20", "--retrieval"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):  # not launched ourselves
    ENV.pop(var, None)


def run(n, what, *args, opts=(), cwd, timeout=120, check=True):
    """tests/mpi_driver.py (run_train.py or run_eval.py) as n processes under mpiexec, or alone (n 1)."""
    cmd = [sys.executable, "-m", "tests.mpi_driver", what, *opts, "--", *args]
    if n > 1:
        cmd = [MPIEXEC, "-n", str(n), *cmd]
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def log(out):
    return [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]


def assert_same_training(a, b, rtol):
    """The runs in directories a and b: same batches, steps, working sets and violated shares; the
    other log values within rtol, and every array of every model and checkpoint file within rtol
    of the file's largest parameter (an element that rounding alone moves, such as a bias whose
    exact gradient is 0, has no scale of its own)."""
    la, lb = log(a), log(b)
    assert [(r["stage"], r["epoch"], r["batch"]) for r in la] == [(r["stage"], r["epoch"], r["batch"]) for r in lb]
    for ra, rb in zip(la, lb):
        for k, v in ra.items():
            if k.startswith("seconds"):
                continue
            if k in ("step", "working_set", "violated", "lr", "stage", "epoch", "batch") or v is None:
                assert rb[k] == v, (k, ra, rb)
            else:
                assert rb[k] == pytest.approx(v, rel=rtol), (k, ra, rb)
    for name in ("pretrain_model.npz", "model.npz", "checkpoint.npz"):
        if not os.path.exists(os.path.join(a, name)):
            continue
        za, zb = np.load(os.path.join(a, name)), np.load(os.path.join(b, name))
        assert sorted(za.files) == sorted(zb.files)
        scale = max(float(np.abs(za[k]).max()) for k in za.files if k.startswith("param/"))
        for k in za.files:
            x, y = za[k].astype(np.float64), zb[k].astype(np.float64)
            if k == "state_json" or x.size == 0:
                continue
            if k.endswith("working_set") or k.endswith("/t"):
                np.testing.assert_array_equal(x, y, err_msg=f"{name}: {k}")
                continue
            assert float(np.abs(x - y).max()) <= rtol * (scale if k.startswith("param/") else np.abs(x).max()), \
                f"{name}: {k}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny dataset and one run of both stages in one process (the reference)."""
    d = tmp_path_factory.mktemp("mpi")
    data = write_tiny_dataset(str(d / "d.h5"), n_per=6, subjects=("S1", "S5"), actions=("Walking", "Eating"),
                              bank_extra=2)
    if MPIEXEC and HAVE_MPI4PY:
        run(1, "train", "--data", data, "--out", "one", *TRAIN, cwd=d)
    return d, data


@needs_mpi
def test_two_processes_train_as_one(runs):
    d, data = runs
    done = run(2, "train", "--data", data, "--out", "two", *TRAIN, cwd=d)
    assert "2 MPI processes" in done.stdout and done.stderr.strip() == ""
    assert_same_training(str(d / "one"), str(d / "two"), 1e-5)
    config = [json.load(open(d / o / "config.json")) for o in ("one", "two")]
    assert {**config[0], "out": ""} == {**config[1], "out": ""}          # nothing rank- or N-specific
    assert json.load(open(d / "one" / "summary.json")) == json.load(open(d / "two" / "summary.json"))


@needs_mpi
def test_float64_to_1e_10(runs):
    d, data = runs
    for n in (1, 2):
        run(n, "train", "--data", data, "--out", f"f64-{n}", *TRAIN, opts=["--float64"], cwd=d)
    assert np.load(d / "f64-2" / "model.npz")["param/h1.W"].dtype == np.float64
    assert_same_training(str(d / "f64-1"), str(d / "f64-2"), 1e-10)


@needs_mpi
def test_adam_and_three_processes(runs):
    """Algorithm 1 alone with Adam, from the reference's pre-training, on 3 processes (shares 3, 3, 2
    of a batch of 8: unequal weights). Adam divides by the gradient's running RMS, so a gradient
    that is zero up to rounding moves its parameter by a rounding-dependent share of the rate: in
    float32 the ranks must agree bit for bit (and the costs with one process), in float64 the
    parameters too (to 1e-10)."""
    d, data = runs
    pre = str(d / "one" / "pretrain_model.npz")
    args = ["--data", data, *TRAIN, "--stage", "structnet", "--pretrained", pre, "--optimizer", "adam"]
    for opts in ([], ["--float64"]):
        name = "adam" + "-f64" * bool(opts)
        run(1, "train", *args, "--out", f"{name}-1", opts=opts, cwd=d)
        run(3, "train", *args, "--out", f"{name}-3", opts=[*opts, "--check-ranks"], cwd=d)
    assert_same_training(str(d / "adam-f64-1"), str(d / "adam-f64-3"), 1e-10)
    la, lb = log(d / "adam-1"), log(d / "adam-3")
    assert [(r["step"], r["working_set"], r["violated"]) for r in la] == \
        [(r["step"], r["working_set"], r["violated"]) for r in lb]
    np.testing.assert_allclose([r["cost"] for r in lb], [r["cost"] for r in la], rtol=1e-4)


@needs_mpi
def test_resume_two_processes_with_one(runs):
    d, data = runs
    run(2, "train", "--data", data, "--out", "resumed", *TRAIN, "--stop-after", "15", cwd=d)
    assert len(log(d / "resumed")) == 15
    run(1, "train", "--data", data, "--out", "resumed", *TRAIN, "--resume", cwd=d)
    assert_same_training(str(d / "one"), str(d / "resumed"), 1e-5)


def _tables(stdout):
    """The printed results without timings and file names."""
    return [line for line in stdout.splitlines()
            if not line.startswith(("time (s)", "wrote", "pose bank:", "model:"))]


@needs_mpi
def test_evaluation_shares_images_or_the_bank(runs):
    d, data = runs
    outs = {}
    for n, extra in ((1, []), (2, []), (2, ["--shard-bank", "--no-cache"])):
        name = f"{n}{'-bank' if extra else ''}"
        done = run(n, "eval", "--run", "one", *EVAL, *extra, "--json", f"eval-{name}.json",
                   "--export-topk", "10", f"topk-{name}.npz", cwd=d)
        outs[name] = done.stdout
    for name in ("2", "2-bank"):
        assert _tables(outs[name]) == _tables(outs["1"]), name
        ref, got = (json.load(open(d / f"eval-{x}.json")) for x in ("1", name))
        assert [r["method"] for r in got] == [r["method"] for r in ref]
        for a, b in zip(ref, got):
            assert b["mpjpe_all_frames"] == pytest.approx(a["mpjpe_all_frames"], rel=1e-9), a["method"]
            assert b["context"]["retrieval"] == a["context"]["retrieval"]
        ta, tb = np.load(d / "topk-1.npz"), np.load(d / f"topk-{name}.npz")
        np.testing.assert_allclose(tb["scores"], ta["scores"], rtol=1e-6)


@needs_mpi
def test_an_error_on_one_rank_ends_all_with_its_line(runs):
    d, data = runs
    t = time.monotonic()
    done = run(2, "train", "--data", data, "--out", "fail", *TRAIN, opts=["--fail", "1:3"], cwd=d, timeout=60,
               check=False)
    assert done.returncode != 0 and time.monotonic() - t < 30
    ours = [line for line in done.stderr.splitlines() if line.startswith("run_train.py")]
    assert ours == ["run_train.py: error: rank 1: injected failure at batch 3"], done.stderr


def _rank_pid(marker, rank):
    """The pid of the process of this test's run (its command line holds marker) with PMI_RANK rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if marker in cmd and "tests.mpi_driver" in cmd and f"PMI_RANK={rank}" in env:
            return int(pid)
    return None


@needs_mpi
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_job_within_seconds(runs):
    d, data = runs
    out = str(d / "killed")
    args = ["--data", data, "--out", out, *TRAIN, "--epochs", "100000"]
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "tests.mpi_driver", "train", "--", *args]
    job = subprocess.Popen(cmd, cwd=d, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (os.path.exists(os.path.join(out, "log.jsonl")) and len(log(out)) > 15):
            assert job.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        pid = _rank_pid(out, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t = time.monotonic()
        said = "".join(job.communicate(timeout=20))     # mpiexec's report (hydra: on stdout)
        assert time.monotonic() - t < 10 and job.returncode != 0
        assert "BAD TERMINATION" in said and "signal 9" in said, said[-2000:]
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


@needs_mpi
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="the fake CuPy's kernels need a C++ compiler")
def test_device_path_reduces_through_host_copies(runs):
    """--device gpu against tests/fake_cupy.py on 2 ranks (no NCCL there: MPI on host copies) equals
    the CPU run of one process (im2col on the device, FFT on the CPU: rounding apart)."""
    d, data = runs
    run(2, "train", "--data", data, "--out", "gpu-2", *TRAIN, "--device", "gpu", opts=["--fake-cupy"], cwd=d)
    assert_same_training(str(d / "one"), str(d / "gpu-2"), 1e-4)


def test_several_processes_without_mpi4py_is_one_line(tmp_path):
    """What mpiexec without the mpi extra gives (its environment, mpi4py hidden): one line, from rank 0."""
    for rank, lines in (("0", 1), ("1", 0)):
        env = dict(ENV, PMI_SIZE="2", PMI_RANK=rank)
        done = subprocess.run([sys.executable, "-m", "tests.mpi_driver", "train", "--no-mpi4py", "--",
                               "--out", str(tmp_path / "x"), "--no-progress"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        err = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(err) == lines, done.stderr
        assert not lines or ("mpi4py is not installed" in err[0] and "[mpi]" in err[0])


# ---- without MPI: the pieces the ranks rely on ---------------------------------------------------
def test_one_process_comm_is_the_identity():
    from nn.comm import Comm
    c = Comm()
    g = {"a": np.ones((2, 3), np.float32)}
    grads, scalars = c.reduce_batch(g, [1.5, 2.0], 0.25)
    assert grads is g and scalars == [1.5, 2.0]
    buf = np.arange(4.0)
    assert c.allreduce_sum(buf) is buf and c.sum_floats([1.0, 2.0], 0.5) == [1.0, 2.0]
    sh = c.shard(7)
    assert (sh.lo, sh.hi, sh.weight) == (0, 7, 1.0) and c.allgather(3) == [3] and c.bcast("x") == "x"


def test_shards_cover_the_batch_in_rank_order():
    from nn.comm import Comm
    for n, size in ((8, 2), (8, 3), (128, 64), (5, 5)):
        shards = []
        for r in range(size):
            c = Comm()
            c.rank, c.size = r, size
            shards.append(c.shard(n))
        assert [s.lo for s in shards] == [0] + [s.hi for s in shards[:-1]] and shards[-1].hi == n
        assert sum(s.weight for s in shards) == pytest.approx(1.0)


def test_merge_top_k_equals_the_whole_bank(rng):
    """The per-shard top lists merge into the top k of all the shards' scores, best first, ties by
    the lower bank index; against one process's top k of the whole bank, the scores agree to the
    rounding of GEMMs over other blocks of the bank."""
    from structlearn.inference import merge_top_k, top_k_scores
    f_I = rng.standard_normal((6, 4)).astype(np.float32)
    emb = rng.standard_normal((50, 4)).astype(np.float32)
    emb[30] = emb[3]                      # a tie across shards
    for k in (1, 5, 17, 50):
        s, _ = top_k_scores(f_I, emb, k)
        for bounds in ((0, 25, 50), (0, 7, 40, 50), (0, 1, 2, 50)):
            lists, full = [], []
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                ss, ii = top_k_scores(f_I, emb[lo:hi], k)
                lists.append((ss, ii + lo))
                full.append(f_I @ emb[lo:hi].T)
            ms, mi = merge_top_k(lists, k)
            scores = np.concatenate(full, axis=1)                  # every score as its shard computed it
            order = np.lexsort((np.broadcast_to(np.arange(50), scores.shape), -scores), axis=-1)[:, :k]
            np.testing.assert_array_equal(mi, order)
            np.testing.assert_array_equal(ms, np.take_along_axis(scores, order, axis=1))
            np.testing.assert_allclose(ms, s, rtol=1e-6)


def test_loader_rows_are_the_batch_rows(tmp_path):
    """A rank's loader (rows=) serves exactly its rows of the whole batch, augmentation included."""
    from data.dataset import PoseDataset
    from data.imagestats import ImageStats
    from data.loader import BatchLoader
    path = write_tiny_dataset(str(tmp_path / "d.h5"), n_per=4, subjects=("S1",))
    ds = PoseDataset(path)
    idx = ds.select(subjects=["S1"])
    stats = ImageStats.for_subjects(ds, ["S1"])
    kw = dict(train=True, stats=stats, crop=100, noise_std=0.1, seed=3)
    whole = BatchLoader(ds, idx, 6, **kw)
    for lo, hi in ((0, 3), (3, 6), (2, 5)):
        part = BatchLoader(ds, idx, 6, rows=(lo, hi), **kw)
        for b in range(whole.n_batches):
            a, p = whole.make_batch(1, b), part.make_batch(1, b)
            for field in ("images", "poses", "index", "joints2d"):
                np.testing.assert_array_equal(getattr(p, field), getattr(a, field)[lo:hi])
