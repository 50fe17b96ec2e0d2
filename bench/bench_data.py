"""data/ benchmark: synthetic rendering cost, and the batch loader from memory and from the file.

Prints, for each room setting (lab, random), the CPU milliseconds per rendered image (one
sequence of each of a few actions) and the default dataset's estimated generation time on all
cores; then, on a small generated file, the loader's milliseconds per training batch with
the images preloaded and read from the file.

    python bench/bench_data.py [--batch 128]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import median_time  # noqa: E402
from data import h36m  # noqa: E402
from data.dataset import PoseDataset  # noqa: E402
from data.imagestats import ImageStats  # noqa: E402
from data.loader import BatchLoader  # noqa: E402
from data.synth import generator  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()

    # Rendering: CPU time, which does not count other processes sharing the cores.
    actions = ("Walking", "Sitting", "Discussion", "SittingDown")
    total = len(generator.tasks(0, 1.0)) * len(h36m.CAMERA_IDS) * generator.frames_per_sequence(1.0)
    cores = os.cpu_count() or 1
    for rooms in generator.ROOMS:
        images, cpu = 0, 0.0
        for a in actions:
            t0 = time.process_time()
            r = generator.render_sequence("S5", a, 1, seed=0, scale=1.0, rooms=rooms)
            cpu += time.process_time() - t0
            images += len(r["images"])
        per_image = cpu / images
        print(f"render ({rooms} rooms): {1000 * per_image:.1f} ms CPU per image ({images} images, incl. motion, "
              f"bank and room); default dataset: {total} images, about {total * per_image / cores:.0f} s on "
              f"{cores} cores")

    with tempfile.TemporaryDirectory() as d:
        path = generator.generate(os.path.join(d, "b.h5"), scale=4.0 / generator.FRAMES_PER_SEQUENCE, seed=0, workers=1,
                                  subjects=("S1", "S5"), actions=h36m.ACTIONS[:8], progress=False)
        with PoseDataset(path) as ds:
            idx = ds.select()
            stats = ImageStats.for_subjects(ds, ds.subjects)
            for preload in (True, False):
                loader = BatchLoader(ds, idx, args.batch, train=True, stats=stats, preload=preload)
                seconds = median_time(lambda: loader.make_batch(0, 0), reps=5)
                print(f"loader ({'preloaded' if preload else 'from file'}): {1000 * seconds:.1f} ms per "
                      f"batch of {args.batch} (made in a background thread while training)")


if __name__ == "__main__":
    main()
