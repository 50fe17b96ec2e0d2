"""The synthetic Human3.6M-like dataset: the project's embedded default, generated on any machine.

Seven subjects (S1, S5, S6, S7, S8 for training; S9, S11 for testing) with their own body
proportions (1.55-1.90 m), build and clothes (subjects) perform the 15 actions, two sub-actions
each (motion: joint angles within the limits of data.skeleton, 50 Hz). The four Human3.6M cameras
(real intrinsics and the subject's real extrinsics) film them in a textured room, one lab for the
whole dataset or a room per sequence; each sampled frame is ray-cast (render) straight into a
128x128 square crop around the projected body, and every pose at 10 Hz goes into the file's pose
bank (generator; preview draws samples).

    python -m data.synth --out FILE.h5 [--scale S] [--seed N] [--rooms lab|random] [--clip-frames N] [--workers W]
    python -m data.synth --preview FILE.png [--data FILE.h5]
"""
from data.synth.generator import (BANK_RATE_HZ, CLIP_FRAMES, FRAMES_PER_SEQUENCE, ROOMS, default_path,
                                  ensure_synthetic, generate)

__all__ = ["BANK_RATE_HZ", "CLIP_FRAMES", "FRAMES_PER_SEQUENCE", "ROOMS", "default_path", "ensure_synthetic",
           "generate"]
