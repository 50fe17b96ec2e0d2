"""A trained run for evaluation: its model files (resolve_run) and a model loaded with the
normaliser and image statistics it was trained with (load_for_eval); EvalError for every
problem of the evaluation's inputs that the user can fix."""
import traceback
from dataclasses import dataclass
from pathlib import Path

from data.dataset import DatasetError
from data.h36m import N_JOINTS, POSE_DIM
from data.imagestats import ImageStats
from nn import comm as _comm
from nn.backend import GPUUnavailable

from .checkpoint import CheckpointError
from .encoding import PoseNormalizer
from .model import load_model


class EvalError(ValueError):
    """A problem the user can act on: run_eval prints it as one line and exits non-zero."""


def resolve_run(run):
    """(model.npz, pretrain_model.npz or None) of a run directory or a model file."""
    path = Path(run)
    if path.is_file():
        model, run_dir = path, path.parent
    elif path.is_dir():
        run_dir, model = path, path / "model.npz"
        if not model.exists():
            what = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            raise EvalError(f"{path}: no model.npz in the run directory (it holds {what}); "
                            "has training finished? (run_train.py writes model.npz at the end)")
    else:
        hint = " (a dangling link: its run was removed)" if path.is_symlink() else ""
        raise EvalError(f"{run}: no such run directory or model file{hint}; train one with run_train.py "
                        "or pass --run DIR")
    pretrain = run_dir / "pretrain_model.npz"
    return str(model), (str(pretrain) if pretrain.exists() else None)


@dataclass
class LoadedModel:
    path: str
    kind: str                  # "structnet" | "multitask"
    net: object
    params: object             # on the evaluation device
    meta: dict
    normalizer: PoseNormalizer
    stats: ImageStats


def load_for_eval(path, kind, device="cpu"):
    """A model file of the given kind with its normaliser and image statistics, params on device."""
    try:
        net, params, meta = load_model(path)
    except CheckpointError as err:
        raise EvalError(str(err)) from None
    if meta["kind"] != kind:
        raise EvalError(f"{path}: a {meta['kind']} model, expected a {kind} model")
    offset = meta.get("normalizer", {}).get("offset", [])
    if len(offset) != POSE_DIM:
        raise EvalError(f"{path}: the model's poses have {len(offset)} coordinates ({len(offset) / 3:g} joints); "
                        f"the data has {N_JOINTS} joints ({POSE_DIM} coordinates)")
    try:
        normalizer = PoseNormalizer.from_dict(meta["normalizer"])
        stats = ImageStats.from_dict(meta["image_stats"])
    except (KeyError, TypeError, ValueError) as err:
        raise EvalError(f"{path}: unusable normaliser or image statistics in the model ({err})") from None
    return LoadedModel(str(path), kind, net, params.to(device), meta, normalizer, stats)


def exit_status(prog, call, errors=(), interrupted="interrupted"):
    """Run call() for an entry point (run_train.py, run_eval.py, run_predict.py): 0, or 1 after one
    line "prog: error: ..." on stderr for a problem the user can fix (the project's errors and
    `errors`), 130 after "prog: <interrupted>" on Ctrl-C. Under MPI (nn.comm.world() made by
    call), a failing rank reports its line and ends every rank (nn.comm.report_and_abort); any
    other exception prints its traceback and ends them too, so no rank waits forever."""
    try:
        call()
    except (EvalError, DatasetError, CheckpointError, GPUUnavailable, _comm.CommError, *errors) as err:
        _comm.report_and_abort(_comm.current(), f"{prog}: error: {err}")
        return 1
    except OSError as err:   # the project's writers name the file (data.files.named_error)
        where = f"{err.filename}: " if err.filename else ""
        _comm.report_and_abort(_comm.current(), f"{prog}: error: {where}{err.strerror or err}")
        return 1
    except KeyboardInterrupt:
        _comm.report_and_abort(_comm.current(), f"\n{prog}: {interrupted}", 130)
        return 130
    except BaseException as err:
        group = _comm.current()
        if group is not None and group.size > 1 and not (isinstance(err, SystemExit) and not err.code):
            traceback.print_exc()
            _comm.report_and_abort(group, f"{prog}: error: {type(err).__name__}: {err}")
        raise
    return 0
