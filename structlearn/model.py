"""Trained-model files: parameters plus the metadata needed to use them (network configuration,
pose normaliser, image statistics, training subjects, data file). One .npz, written atomically.

kind "structnet": the score network (run_eval's max / avg / apf / pred modes);
kind "multitask": the pre-training network (its regression head is the DconvMP-HML baseline).
"""
import os

import numpy as np

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .network import MultiTaskNet, NetConfig, StructNet

MODEL_FORMAT = 1


def save_model(path, params, kind, net_cfg, normalizer, image_stats, train_config, extra=None):
    meta = {"format": MODEL_FORMAT, "kind": kind, "net": net_cfg.to_dict(), "normalizer": normalizer.to_dict(),
            "image_stats": image_stats.to_dict(), "train_config": train_config.to_dict(), **(extra or {})}
    save_checkpoint(path, params, meta)


def load_model(path):
    """(network object, Params, meta); a clear error for a missing or foreign file."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no model file (train one with run_train.py)")
    params, meta, _ = load_checkpoint(path)
    if meta.get("format") != MODEL_FORMAT or meta.get("kind") not in ("structnet", "multitask"):
        raise CheckpointError(f"{path}: not a StructNet model file (format {meta.get('format')}, kind {meta.get('kind')})")
    try:
        cfg = NetConfig.from_dict(meta["net"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unusable network configuration in the model file ({err})") from None
    net = StructNet(cfg) if meta["kind"] == "structnet" else MultiTaskNet(cfg)
    check_shapes(path, params, net)
    return net, params, meta


def check_shapes(path, params, net):
    """CheckpointError naming path when params lack a parameter of net or have another shape."""
    expected = net.init_params(np.random.default_rng(0))
    wrong = [k for k in expected if k not in params or params[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: parameters do not match the network configuration ({', '.join(wrong[:4])})")
