"""Learning curves of Algorithm 1 (run_train.py --eval-every N; docs/eval.md).

After every N max-margin epochs, at the start and at the end, the trainer's parameters are
evaluated in memory through the Evaluator's own code paths (Evaluator.in_memory, refresh, run,
alignment; the bank embeddings f_J recomputed each time, since the pose branch changed):

  train  the training-set alignment statistic of Sec. 6 (share of images whose max-score bank pose
         is within 30 mm MPJPE of the truth, and the median) on CURVE_TRAIN_IMAGES evenly spaced
         training images;
  test   StructNet-Max, StructNet-Avg(A) (A = 0.5% of the bank) and StructNet-Pred MPJPE on
         CURVE_TEST_IMAGES evenly spaced test images (every action of S9, S11), with the bank
         floor and the mean pose as references.

Both subsets are fixed for the run. One JSON line per evaluation goes to <run>/curves.jsonl (not
log.jsonl, so the training log is the same with and without the curves), and
<run>/learning_curves.png is drawn at the end of training. The evaluation reads the parameters,
draws no random numbers and touches no training state: parameters, log and checkpoints are those
of a run without it (tested), and a resumed run writes the same records as an uninterrupted one.
"""
import json
import time
from pathlib import Path

from data import h36m
from data.files import append_text, write_text_atomic

from .evaluate import Evaluator, default_A, evenly_spaced
from .network import StructNet

CURVE_TRAIN_IMAGES = 1000   # training images of the alignment statistic
CURVE_TEST_IMAGES = 960     # test images: 32 per action and subject of S9, S11 at the default scale
CURVE_MODES = ("max", "avg", "pred")
CURVES_FILE = "curves.jsonl"
CURVES_FIGURE = "learning_curves.png"


def due(epochs_done, every, total):
    """Whether the parameters after epochs_done max-margin epochs are a curve point: the start (0),
    every `every`-th epoch and the last; never when every is 0."""
    return every > 0 and (epochs_done % every == 0 or epochs_done == total)


def read_records(path):
    """The records of a curves.jsonl (a missing file: none), in file order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LearningCurves:
    """The curve points of one run: LearningCurves(trainer, resume_point), then point(epochs_done,
    params) at the stage start and after every epoch. resume_point: the (epoch, batch) where a
    resumed max-margin stage continues, whose records up to that epoch are kept (a resumed run
    then appends exactly what an uninterrupted one writes); None for a stage that starts afresh,
    whose curves.jsonl starts empty."""

    def __init__(self, trainer, resume_point):
        self.trainer, self.cfg, self.say = trainer, trainer.cfg, trainer.say
        self.path = Path(trainer.out) / CURVES_FILE
        self.records = [r for r in read_records(self.path) if resume_point and r["epoch"] <= resume_point[0]]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.ev = None

    def _evaluator(self, params):
        t = self.trainer
        if self.ev is None:
            self.ev = Evaluator.in_memory(StructNet(t.net_cfg), params, t.normalizer, t.stats, t.dataset, t.subjects,
                                          list(self.cfg.actions) or None, self.cfg.device, log=self.say)
            self.train_rows = evenly_spaced(self.ev.train_rows, CURVE_TRAIN_IMAGES)
            held = [s for s in h36m.TEST_SUBJECTS if s in t.dataset.subjects and s not in t.subjects]
            self.test_subjects = held
            self.test_rows = evenly_spaced(t.dataset.select(subjects=held), CURVE_TEST_IMAGES) if held else None
            if not held:
                self.say(f"note: --eval-every: {t.data_path} holds no test subject ({', '.join(h36m.TEST_SUBJECTS)}) "
                         "outside training; the curves have the training alignment only")
        else:
            self.ev.refresh(params)
        return self.ev

    def evaluate(self, epochs_done, params):
        """One curve record of params (StructNet parameters on the training device, read only)."""
        t0 = time.perf_counter()
        ev = self._evaluator(params)
        align = ev.alignment(max_images=len(self.train_rows), progress=False)
        record = {"epoch": int(epochs_done), "bank_poses": ev.bank_size,
                  "train": {k: align[k] for k in ("share_30mm", "median_mm", "mean_mm", "images")}, "test": None}
        if self.test_rows is not None:
            A = default_A(ev.bank_size)
            out = ev.run(self.test_rows, CURVE_MODES, A, progress=False)
            record["test"] = {"subjects": self.test_subjects, "images": int(len(self.test_rows)), "A": A,
                              **{m: float(out.mpjpe[m].mean()) for m in CURVE_MODES},
                              "bank_floor": float(out.bank_floor.mean()), "mean_pose": out.mean_pose_mpjpe}
        record["seconds"] = round(time.perf_counter() - t0, 3)
        return record

    def point(self, epochs_done, params):
        """Evaluate and log the parameters after epochs_done epochs when due and not yet recorded;
        after the last epoch, draw learning_curves.png."""
        every, total = self.cfg.eval_every, self.cfg.epochs
        if not due(epochs_done, every, total):
            return
        if all(r["epoch"] != epochs_done for r in self.records):
            record = self.evaluate(epochs_done, params)
            self.records.append(record)
            append_text(self.path, json.dumps(record) + "\n")
            self.say(describe(record))
        if epochs_done == total:
            from .figures import learning_curves  # matplotlib only when drawing
            self.say(f"wrote {learning_curves(Path(self.trainer.out) / CURVES_FIGURE, self.records)}")


def describe(record):
    """One line of a curve record for the console."""
    tr, te = record["train"], record["test"]
    line = (f"eval after {record['epoch']} max-margin epochs: training alignment {100 * tr['share_30mm']:.1f}% of "
            f"{tr['images']} images within 30 mm (median {tr['median_mm']:.1f} mm)")
    if te:
        line += (f"; test MPJPE on {te['images']} images: Max {te['max']:.1f}, Avg({te['A']}) {te['avg']:.1f}, "
                 f"Pred {te['pred']:.1f} mm (bank floor {te['bank_floor']:.1f}, mean pose {te['mean_pose']:.1f})")
    return line + f" [{record['seconds']:.1f} s]"
