"""Checkpoints: parameters, extra arrays (working set, velocities) and a JSON state (stage,
epoch, next batch, resolved configuration, the data trained on), in one .npz written atomically.
Model files (structlearn.model) use the same container with another state."""
import json

import numpy as np

from nn.params import Params, load_npz, save_npz_atomic


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, params, state, arrays=None):
    """Atomic write of params {name: array}, state (JSON-able dict) and arrays {name: array}."""
    out = {"param/" + k: np.asarray(v) for k, v in params.items()}
    for k, v in (arrays or {}).items():
        out["array/" + k] = np.asarray(v)
    out["state_json"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    save_npz_atomic(path, out)


def load_checkpoint(path):
    """(Params, state dict, arrays dict); CheckpointError naming the file when unreadable."""
    try:
        z = load_npz(path)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if "state_json" not in z:
        raise CheckpointError(f"{path}: not a checkpoint (no state)")
    try:
        state = json.loads(z["state_json"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt checkpoint state ({err})") from None
    params = Params((k[6:], v) for k, v in z.items() if k.startswith("param/"))
    arrays = {k[6:]: v for k, v in z.items() if k.startswith("array/")}
    return params, state, arrays


# what a training checkpoint's state holds (structlearn.train.Trainer._checkpoint), by type
TRAINING_STATE = {"stage": str, "epoch": int, "batch": int, "config": dict, "normalizer": dict,
                  "image_stats": dict, "net": dict}


def load_training_checkpoint(path):
    """load_checkpoint for a training checkpoint: CheckpointError naming the file when it is
    another kind of file (a model file, say) or its state lacks a field."""
    params, state, arrays = load_checkpoint(path)
    if "kind" in state and "stage" not in state:
        raise CheckpointError(f"{path}: a {state['kind']} model file, not a training checkpoint")
    for key, kind in TRAINING_STATE.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(f"{path}: not a training checkpoint (its state has no valid {key!r})")
    if state["stage"] not in ("pretrain", "structnet") or state["epoch"] < 0 or state["batch"] < 0:
        raise CheckpointError(f"{path}: corrupt checkpoint state (stage {state['stage']!r}, epoch "
                              f"{state['epoch']}, batch {state['batch']})")
    return params, state, arrays
