"""The network's encoding of poses: root-relative poses in mm <-> the normalised 51-d vectors that the
pose embedding reads (eq. 3) and the auxiliary tanh output predicts (eqs. 10, 11). A property of
the network's training, not of the data, so it lives here and is saved with each model."""
import numpy as np

from data.h36m import N_JOINTS, POSE_DIM


class PoseNormalizer:
    """Affine map between root-relative poses (...,17,3) in mm and tanh targets (...,51).

    normalize(y) = (y.reshape(POSE_DIM) - offset) / scale, denormalize inverts it exactly.
    fit() sets offset = the midpoint of each coordinate's range over the training poses and
    scale = half that range / margin, so every training coordinate lands in [-margin, margin]
    (margin 0.9 keeps targets off tanh's flat tails). mode="scalar" uses one scale for all 51
    coordinates (keeps squared error proportional to squared joint error); "coordinate" one each.
    Constant coordinates (the root, always 0) get scale 1 mm.
    """

    def __init__(self, offset, scale):
        self.offset = np.asarray(offset, dtype=np.float64).reshape(POSE_DIM)
        self.scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (POSE_DIM,)).copy()
        if not (np.isfinite(self.offset).all() and np.isfinite(self.scale).all() and (self.scale > 0).all()):
            raise ValueError("PoseNormalizer: offset and scale must be finite and scale > 0")

    @classmethod
    def fit(cls, poses_root_relative, margin=0.9, mode="coordinate"):
        """Fit on (N,17,3) root-relative training poses, mm."""
        y = np.asarray(poses_root_relative, dtype=np.float64).reshape(-1, POSE_DIM)
        if len(y) == 0:
            raise ValueError("PoseNormalizer.fit: no poses")
        lo, hi = y.min(axis=0), y.max(axis=0)
        offset = (lo + hi) / 2
        half = (hi - lo) / 2
        if mode == "scalar":
            half = np.full(POSE_DIM, half.max())
        elif mode != "coordinate":
            raise ValueError(f"PoseNormalizer.fit: mode must be 'coordinate' or 'scalar', got {mode!r}")
        return cls(offset, np.maximum(half, 1.0) / margin)

    def normalize(self, poses):
        """(...,17,3) root-relative mm -> (...,51) float32."""
        poses = np.asarray(poses)
        flat = poses.reshape(poses.shape[:-2] + (POSE_DIM,))
        return ((flat - self.offset) / self.scale).astype(np.float32)

    def denormalize(self, z):
        """(...,51) -> (...,17,3) root-relative mm, float32."""
        z = np.asarray(z, dtype=np.float64)
        return (z * self.scale + self.offset).reshape(z.shape[:-1] + (N_JOINTS, 3)).astype(np.float32)

    def to_dict(self):
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["offset"], d["scale"])
