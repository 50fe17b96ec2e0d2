"""The synthetic subjects: body proportions, build and clothes, drawn from the seed."""
import numpy as np

from data import h36m
from data import skeleton as sk
from data.synth import render

_SKIN = np.array([[0.93, 0.76, 0.62], [0.85, 0.64, 0.48], [0.72, 0.52, 0.36], [0.55, 0.38, 0.25],
                  [0.40, 0.27, 0.18], [0.96, 0.82, 0.70]])
_HAIR = np.array([[0.06, 0.05, 0.04], [0.25, 0.16, 0.08], [0.45, 0.32, 0.16], [0.75, 0.62, 0.38],
                  [0.55, 0.55, 0.55], [0.14, 0.09, 0.06]])
_PANTS = np.array([[0.12, 0.15, 0.28], [0.2, 0.2, 0.22], [0.08, 0.08, 0.09], [0.55, 0.48, 0.35],
                   [0.3, 0.36, 0.5], [0.35, 0.22, 0.15], [0.6, 0.6, 0.62]])


def _hsv(h, s, v):
    """One HSV colour (components in [0,1]) -> RGB (3,)."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


class SubjectProfile:
    """A synthetic subject: height (mm), Skeleton, BodyStyle. Drawn from [seed, subject index]."""

    def __init__(self, subject, seed):
        k = h36m.ALL_SUBJECTS.index(subject)
        rng = np.random.default_rng([seed, 1, k])
        self.subject = subject
        # Heights spread over 1.55-1.90 m: a jittered grid in a seeded order, so no two subjects
        # are alike and both test subjects are not accidentally the same size.
        slots = np.random.default_rng([seed, 0]).permutation(len(h36m.ALL_SUBJECTS))
        self.height = 1550.0 + (slots[k] + rng.uniform(0.1, 0.9)) * 350.0 / len(h36m.ALL_SUBJECTS)
        base = sk.Skeleton.from_height(self.height).bone_lengths.copy()
        # Individual proportions: one factor per left/right bone pair, a few percent.
        factors = np.ones(h36m.N_JOINTS)
        for j in range(1, h36m.N_JOINTS):
            mirror = h36m.FLIP_PERMUTATION[j]
            factors[j] = factors[mirror] if mirror < j else np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)
        self.skeleton = sk.Skeleton(base * factors)
        albedo = np.zeros((render.N_MATERIALS, 3))
        albedo[render.SKIN] = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.95, 1.05, 3)
        albedo[render.SHIRT] = _hsv(rng.random(), rng.uniform(0.1, 0.85), rng.uniform(0.25, 0.95))
        albedo[render.PANTS] = _PANTS[rng.integers(len(_PANTS))] * rng.uniform(0.85, 1.15)
        albedo[render.SHOES] = [0.08, 0.08, 0.08] if rng.random() < 0.6 else [0.85, 0.85, 0.82]
        albedo[render.HAIR] = _HAIR[rng.integers(len(_HAIR))]
        albedo[render.EYE] = [0.04, 0.03, 0.03]
        albedo[render.LIPS] = albedo[render.SKIN] * [0.8, 0.55, 0.55]
        albedo[render.CHAIR] = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))
        long_sleeves = rng.random() < 0.5
        albedo[render.SLEEVE] = albedo[render.SHIRT]
        stripes = (rng.uniform(0.15, 0.35), rng.uniform(60, 160)) if rng.random() < 0.35 else (0.0, 100.0)
        self.style = render.BodyStyle(self.height, rng.uniform(0.88, 1.22), np.clip(albedo, 0, 1),
                                      rng.uniform(0, 1), long_sleeves, stripes)

    def tpose(self):
        return self.skeleton.tpose()
