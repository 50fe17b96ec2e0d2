"""run_train.py / run_eval.py as tests/test_mpi.py launches them, under mpiexec or alone:

    python -m tests.mpi_driver train|eval [--float64] [--fake-cupy] [--no-mpi4py] [--fail RANK:BATCH] -- ARGS

--float64   training in float64 (parameters, images, poses, masks): the reductions' reordering is then
            the only difference between N processes and one, to 1e-10 (no end-of-training alignment);
--fake-cupy the --device gpu path against tests/fake_cupy.py (reductions through MPI on host copies);
--no-mpi4py as if mpi4py were not installed;
--fail R:B  rank R raises a TrainingError at max-margin batch B (the other ranks must not hang);
--check-ranks  at every checkpoint, every rank's parameters and optimiser state must be equal, bit for bit.
"""
import sys

import numpy as np


def _float64():
    from nn.params import Params
    from structlearn import train

    def to(self, device, _to=Params.to):
        return Params((k, v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in _to(self, device).items())

    def dev(self, a):
        a = self.xp.asarray(a)
        return a.astype(np.float64) if a.dtype.kind == "f" else a

    Params.to = to
    train.Trainer._dev = dev
    train.Trainer.summarize = lambda self, max_images=0: None


def _fail(rank, batch):
    from nn import comm
    from structlearn import algorithm1, train

    def step(self, params, images, y_mm, y_n, rng, _step=algorithm1.Algorithm1Step.step):
        self.batches = getattr(self, "batches", 0) + 1
        if comm.current().rank == rank and self.batches == batch:
            raise train.TrainingError(f"injected failure at batch {batch}")
        return _step(self, params, images, y_mm, y_n, rng)

    algorithm1.Algorithm1Step.step = step


def _check_ranks():
    import hashlib

    from nn import backend, comm
    from structlearn import train

    def checkpoint(self, stage, epoch, batch, params, arrays, _checkpoint=train.Trainer._checkpoint):
        h = hashlib.sha256()
        for k, v in [*params.items(), *arrays.items()]:
            h.update(k.encode() + backend.to_numpy(v).tobytes())
        digests = comm.current().allgather(h.hexdigest())
        if len(set(digests)) != 1:
            raise train.TrainingError(f"ranks disagree at {stage} epoch {epoch} batch {batch}")
        return _checkpoint(self, stage, epoch, batch, params, arrays)

    train.Trainer._checkpoint = checkpoint


def main(argv):
    split = argv.index("--")
    opts, args = argv[:split], argv[split + 1:]
    what = opts[0]
    if "--no-mpi4py" in opts:
        sys.modules["mpi4py"] = None
    if "--fake-cupy" in opts:
        from tests.fake_cupy import install
        install()
    if "--float64" in opts:
        _float64()
    if "--check-ranks" in opts:
        _check_ranks()
    if "--fail" in opts:
        rank, batch = opts[opts.index("--fail") + 1].split(":")
        _fail(int(rank), int(batch))
    if what == "train":
        import run_train
        return run_train.main(args)
    import run_eval
    return run_eval.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
