"""Process groups for data-parallel training and sharded evaluation over MPI (docs/mpi.md).

`world()` is the group this process runs in: a `Comm` (one process, every operation the identity,
so a run without MPI runs exactly today's code) unless a launcher (mpiexec, mpirun, srun) started
several processes, then an `MPIComm` over mpi4py's COMM_WORLD. mpi4py is imported only then; a
launch of several processes without it is a CommError naming the `mpi` extra.

Reductions take one flat buffer (host or device). On CuPy arrays they go through NCCL where CuPy
provides it, else through MPI on a host copy. Every collective is counted (calls, bytes, seconds)
for bench/bench_mpi.py.
"""
import os
import sys
import time

import numpy as np

from . import backend, parallel

# environment variables by which launchers tell a process how many were started
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
# a non-root rank that fails waits this long before it reports, so that an error every rank
# meets is reported once, by rank 0 (whose abort ends the others first)
REPORT_DELAY_S = 1.0


class CommError(RuntimeError):
    """The process group cannot be set up (a one-line error for the user)."""


def _launched():
    """(size, rank) the launcher announced in the environment; (1, 0) when there is none."""
    for size_var, rank_var in zip(SIZE_VARS, RANK_VARS):
        if size_var == "SLURM_STEP_NUM_TASKS" and not os.environ.get("SLURM_STEP_ID", "").isdigit():
            continue  # a Slurm batch script, not a task of srun
        try:
            size = int(os.environ.get(size_var, ""))
        except ValueError:
            continue
        try:
            rank = int(os.environ.get(rank_var, "0"))
        except ValueError:
            rank = 0
        return size, rank
    return 1, 0


def launch_rank():
    """This process's rank as the launcher announced it (0 without a launcher), even before, or
    without, an MPI setup: for deciding who reports an error."""
    return _launched()[1]


class Shard:
    """The examples rows = [lo, hi) of a global batch of `total` that one rank takes; weight
    (hi - lo) / total turns the rank's mean over its rows into its share of the batch mean."""

    def __init__(self, lo, hi, total):
        self.lo, self.hi, self.total = int(lo), int(hi), int(total)
        self.rows = slice(self.lo, self.hi)
        self.weight = (self.hi - self.lo) / self.total


class Comm:
    """One process (rank 0 of 1): the collectives return their input unchanged."""
    rank, size, local_rank = 0, 1, 0

    def __init__(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0

    @property
    def root(self):
        return self.rank == 0

    def shard(self, n):
        """Shard of rows [r n / N, (r + 1) n / N) of n (contiguous, in rank order)."""
        return Shard(self.rank * n // self.size, (self.rank + 1) * n // self.size, n)

    def allreduce_sum(self, buf):
        """The elementwise sum over ranks of buf (n,) (NumPy or CuPy), in place; returns buf."""
        return buf

    def allgather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] (any picklable object)."""
        return [obj]

    def bcast(self, obj):
        """Rank 0's obj on every rank."""
        return obj

    def barrier(self):
        pass

    def abort(self, code=1):
        """End every rank of the group (never returns)."""
        sys.exit(code)

    # --- built on the collectives above: the same code for one process and for many ---------
    def reduce_batch(self, grads, scalars, weight):
        """Data-parallel sum of a mini-batch's gradients {name: array} and scalars (floats), each
        rank's scaled by its weight (Shard.weight), in ONE reduction of one flat buffer in the
        gradients' dtype. Returns (grads, scalars); in one process, the inputs unchanged."""
        if self.size == 1:
            return grads, list(scalars)
        names = list(grads)
        xp = backend.get_array_module(*[grads[k] for k in names]) if names else np
        dtype = np.result_type(*[grads[k].dtype for k in names]) if names else np.float64
        w = dtype.type(weight)
        parts = [(grads[k] * w).ravel() for k in names]
        buf = xp.concatenate(parts + [xp.asarray(np.asarray(scalars, dtype=dtype))])
        self.allreduce_sum(buf)
        out, at = {}, 0
        for k in names:
            n = grads[k].size
            out[k] = buf[at:at + n].reshape(grads[k].shape)
            at += n
        return out, [float(v) for v in backend.to_numpy(buf[at:])]

    def sum_floats(self, values, weight=1.0):
        """[sum over ranks of weight * value] of host floats, in float64 (line-search costs)."""
        if self.size == 1:
            return list(values)
        buf = np.asarray(values, dtype=np.float64) * weight
        return [float(v) for v in self.allreduce_sum(buf)]

    def gather_rows(self, local, shard):
        """The rows of every rank's shard, in order: local (hi - lo, ...) integers of this rank's rows
        of a batch of shard.total -> (total, ...) int64, by one sum-reduction of a zero-filled
        buffer (the per-batch increments of the working set)."""
        if self.size == 1:
            return np.asarray(local, dtype=np.int64)
        local = np.asarray(local, dtype=np.int64)
        buf = np.zeros((shard.total,) + local.shape[1:], dtype=np.int64)
        buf[shard.rows] = local
        return self.allreduce_sum(buf.reshape(-1)).reshape(buf.shape)

    def concat_rows(self, local):
        """np.concatenate of every rank's host array local (rows of its shard), in rank order."""
        if self.size == 1:
            return local
        return np.concatenate(self.allgather(local))


class MPIComm(Comm):
    """The ranks of MPI_COMM_WORLD (mpi4py). local_rank: the rank among the processes of this node
    (for one GPU per rank)."""

    def __init__(self):
        super().__init__()
        from mpi4py import MPI
        self.MPI, self.mpi = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.mpi.Get_rank(), self.mpi.Get_size()
        node = self.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        mine = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        parallel.configure(parallel.sharing_ranks(mine, node.allgather(mine)))   # threads per rank
        node.Free()
        self._nccl = None       # None: not tried; False: unavailable; else the NCCL communicator

    def _count(self, t0, nbytes):
        self.calls += 1
        self.bytes += int(nbytes)
        self.seconds += time.perf_counter() - t0

    def _nccl_comm(self):
        if self._nccl is None:
            nccl = backend.nccl()
            uid = self.bcast(nccl.get_unique_id() if nccl is not None and self.rank == 0 else None)
            ok = self.allgather(nccl is not None and uid is not None)
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank) if all(ok) else False
        return self._nccl

    def allreduce_sum(self, buf):
        t0 = time.perf_counter()
        if backend.is_gpu_array(buf):
            nc = self._nccl_comm()
            if nc:
                nccl = backend.nccl()
                types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                         np.dtype(np.int64): nccl.NCCL_INT64}
                nc.allReduce(buf.data.ptr, buf.data.ptr, buf.size, types[np.dtype(buf.dtype)], nccl.NCCL_SUM,
                             backend.current_stream_ptr())
                backend.synchronize()
            else:
                host = backend.to_numpy(buf)
                self.mpi.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
                buf[...] = backend.to_device(host, "gpu")
        else:
            self.mpi.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self._count(t0, buf.nbytes)
        return buf

    def allgather(self, obj):
        t0 = time.perf_counter()
        out = self.mpi.allgather(obj)
        self._count(t0, getattr(obj, "nbytes", 0))
        return out

    def bcast(self, obj):
        return self.mpi.bcast(obj, root=0)

    def barrier(self):
        self.mpi.Barrier()

    def abort(self, code=1):
        sys.stderr.flush()
        self.mpi.Abort(code)


_WORLD = None


def world():
    """The process group of this process (made once): Comm() without a launcher or for one process,
    MPIComm() for several. CommError when several were launched and mpi4py is missing."""
    global _WORLD
    if _WORLD is None:
        size, _ = _launched()
        if size <= 1:
            _WORLD = Comm()
        else:
            try:
                import mpi4py  # noqa: F401
            except ImportError:
                raise CommError(f"started as {size} MPI processes, but mpi4py is not installed: "
                                "pip install -e '.[mpi]' (or run one process without mpiexec)") from None
            _WORLD = MPIComm()
    return _WORLD


def current():
    """The process group world() made, or None before (or when it failed)."""
    return _WORLD


def report_and_abort(comm, line, code=1):
    """After an error: print line on stderr (rank 0 at once, another rank after REPORT_DELAY_S, so
    an error all ranks meet is printed once) and end every rank. One process: print only."""
    if comm is None or comm.size == 1:
        if launch_rank() == 0:
            print(line, file=sys.stderr, flush=True)
        return
    if comm.rank != 0:
        time.sleep(REPORT_DELAY_S)
        line = line.replace(": error: ", f": error: rank {comm.rank}: ", 1)
    print(line, file=sys.stderr, flush=True)
    comm.abort(code)
