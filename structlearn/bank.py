"""The pose bank: the paper's approximation of the pose space (Sec. 5.2), its embeddings and its floor.

The bank is the data file's dense pose bank of the model's training subjects (and actions)
(pose_space: the same set is Algorithm 1's pose space Y in training); a file without a bank/
group falls back to the training image rows. Its embeddings f_J (eq. 3) do not depend on the
image, so they are computed once per model and cached beside the model file (<model>.bank.npz),
keyed by a fingerprint of the pose branch's parameters, the normaliser and the bank poses: a
stale cache is never used. nearest_pose is the bank floor: the error of the nearest bank pose,
what a perfect retrieval from the bank would score.
"""
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from data.dataset import DatasetError, root_relative
from data.h36m import POSE_DIM
from nn import backend
from nn.params import save_npz_atomic

from .inference import pose_embeddings, to_host
from .trained_run import EvalError

BANK_FORMAT = 2


def pose_space(dataset, subjects, actions=None):
    """The pose space Y of Algorithm 1 and the evaluation's pose bank, one set for both (Sec. 5.3:
    "all the poses in the training set"): the dense bank entries of subjects and actions (None =
    all) of a data.dataset.PoseDataset, whose image rows are the bank when the file has none.
    -> (bank indices (M,) int64, poses (M, 17, 3) float32, root-relative mm). DatasetError for a
    subject or action the file's bank does not hold."""
    bidx = dataset.bank_select(subjects=list(subjects), actions=None if actions is None else list(actions))
    return bidx, root_relative(dataset.bank_poses(bidx)).astype(np.float32)


def training_poses(dataset, subjects, actions, data_path):
    """pose_space for the evaluation: EvalError naming the data file when it holds none of them."""
    try:
        bidx, poses = pose_space(dataset, subjects, actions)
    except DatasetError as err:
        raise EvalError(f"the pose bank (the model's training poses) cannot be built from {data_path}: "
                        f"{err}") from None
    if len(bidx) == 0:
        raise EvalError(f"{data_path} holds no training poses of {','.join(subjects)}")
    return bidx, poses


def check_normalizer(normalizer, bank_mm, data_path, model_path):
    """EvalError when the training poses of the data file do not fit the model's pose normaliser.

    On the data the model was trained on every normalised coordinate spans exactly [-0.9, 0.9]
    (PoseNormalizer.fit). Another data file in the same units and conventions stays near that;
    poses in other units (metres), another joint order or another normalisation spread over a
    sliver of it or far beyond it. Criteria: the median over coordinates of the normalised range
    (max - min) within a factor 4 of 1.8, and at most 5% of the values beyond |z| = 1.5.
    """
    z = normalizer.normalize(bank_mm).astype(np.float64)
    varying = np.ptp(np.asarray(bank_mm, dtype=np.float64).reshape(-1, POSE_DIM), axis=0) > 0
    spread = float(np.median(np.ptp(z[:, varying], axis=0))) if varying.any() and len(z) > 1 else 1.8
    outside = float((np.abs(z) > 1.5).mean())
    if outside > 0.05 or not 0.45 <= spread <= 7.2:
        raise EvalError(f"{model_path} and {data_path} disagree: through the model's pose normaliser the data's "
                        f"training poses span {spread:.3g} (median normalised range; 1.8 on the model's own "
                        f"training data) with {100 * outside:.1f}% of coordinates beyond 1.5: another data file, "
                        "units or normalisation?")


def _pose_param_names(net):
    return [n for layer in net.pose.layers for n in layer.param_shapes()]


def bank_fingerprint(net, params, normalizer, bank_mm):
    """sha256 of what the bank embeddings depend on: the pose branch (kind, parameter names, shapes,
    dtypes, values), the pose normaliser and the bank poses."""
    h = hashlib.sha256()
    h.update(f"bank{BANK_FORMAT}:{net.cfg.pose_embedding}".encode())
    for name in _pose_param_names(net):
        a = np.ascontiguousarray(to_host(params[name]))
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(normalizer.offset.tobytes())
    h.update(normalizer.scale.tobytes())
    h.update(np.ascontiguousarray(bank_mm, dtype=np.float32).tobytes())
    return h.hexdigest()


def bank_cache_path(model_path):
    """model.npz -> model.bank.npz beside it."""
    root, _ = os.path.splitext(str(model_path))
    return root + ".bank.npz"


@dataclass
class Bank:
    poses: np.ndarray      # (M, 17, 3) float32, root-relative mm
    index: np.ndarray      # (M,) int64 entries of the data file's pose bank (PoseDataset.bank_poses)
    rows: np.ndarray       # (M,) int64 image rows showing them, -1 for pose-only entries
    emb: object            # (M, D) f_J on the evaluation device
    fingerprint: str
    source: str            # "cache" | "computed" | "computed (not cached: reason)"


def load_or_build_bank(model, bank_mm, index, rows, cache=True, chunk=8192):
    """Embeddings f_J (eq. 3) of the bank poses for a trained_run.LoadedModel, from the cache when
    it is valid; index and rows as Bank's."""
    fp = bank_fingerprint(model.net, model.params, model.normalizer, bank_mm)
    path = bank_cache_path(model.path)
    xp = backend.get_array_module(model.params[next(iter(model.params))])
    if cache and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fp and z["emb"].shape[0] == len(bank_mm):
                    return Bank(bank_mm, index, rows, xp.asarray(z["emb"]), fp, "cache")
        except Exception:  # unreadable or foreign file: recompute and replace it
            pass
    emb = pose_embeddings(model.net, model.params, model.normalizer.normalize(bank_mm), chunk)
    source = "computed"
    if cache:
        try:
            save_npz_atomic(path, {"fingerprint": np.array(fp), "emb": to_host(emb).astype(np.float32),
                                   "index": index, "rows": rows, "format": np.array(BANK_FORMAT)})
        except OSError as err:
            source = f"computed (not cached: {path}: {err.strerror or err})"
    return Bank(bank_mm, index, rows, emb, fp, source)
