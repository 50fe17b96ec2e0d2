"""The paper's evaluation protocol end to end (Sec. 5.2, Table 1, Figures 3-4), run_eval.py's work:
EvalConfig says what to evaluate and where the results go; run_evaluation loads the run, makes
one streaming pass over the test images (structlearn.evaluate), prints the tables and writes
the JSON, the top-k and VideoPose3D exports and the figures (structlearn.report)."""
import os
from dataclasses import asdict, dataclass, field

from apf import APFConfig
from data import h36m
from nn.comm import Comm

from . import bvh_export, report
from .evaluate import BEST_OF, MODES, PREFERRED, Evaluator, default_A, method_name, summarize, sweep_values
from .retrieval import RETRIEVAL_MM
from .trained_run import EvalError, resolve_run


@dataclass
class EvalConfig:
    # model and data
    run: str = "runs/latest"           # run directory of run_train.py (model.npz, pretrain_model.npz) or a model.npz
    data: str = ""                     # HDF5 file; "" = the file the model was trained on
    subjects: tuple = h36m.TEST_SUBJECTS   # test subjects (names or the groups test/train/all)
    actions: tuple = ()                # test actions; () = every action in the file
    max_images: int = 0                # an evenly spaced subset of at most this many test images; 0 = all
    device: str = "cpu"                # cpu | gpu
    batch_size: int = 256              # test images per batch
    bank_chunk: int = 16384            # bank poses scored per GEMM: memory is batch_size x bank_chunk scores
    cache: bool = True                 # read and write the bank embedding cache (<model>.bank.npz)
    shard_bank: bool = False           # under MPI: every rank scores its own shard of the bank (docs/mpi.md)
    # inference
    modes: tuple = MODES               # structlearn.evaluate.MODES, evaluated and reported in this order
    modes_explicit: bool = True        # False (run_eval's default --mode): drop hml, with a note, when the run has
                                       # no pretrain_model.npz; True: that is an error
    A: int = None                      # poses averaged by StructNet-Avg(A) and the APF/IK targets; None = default_A
    sweep: tuple = ()                  # also StructNet-Avg(A) for these A (Figure 3), or "auto": the shares
                                       # evaluate.SWEEP_SHARES of the bank
    export_k: int = 0                  # write the export_k best bank poses per test image ...
    export_path: str = ""              # ... to this .npz (report.save_topk); export_k 0 = no export
    train_images: int = 2000           # training images for the alignment statistic and Figure 4; 0 = skip
    best_of: tuple = BEST_OF           # k of the best-of-k MPJPE over the k top-scoring bank poses; () = none
    retrieval: bool = False            # Hit@k of image-to-pose and cross-view retrieval (an all-pairs pass)
    retrieval_mm: float = RETRIEVAL_MM  # ... a hit: P-MPJPE within this many mm of the query's pose
    vp3d_path: str = ""                # the predictions (of the first of evaluate.PREFERRED) in VideoPose3D's
                                       # layout (data.vp3d); "" = none
    vp3d_world_path: str = ""          # ... the same in world coordinates (report.save_vp3d(world=True)); "" = none
    bvh_dir: str = ""                  # the APF poses as BVH, one file per sequence (structlearn.bvh_export); "" = none
    apf: APFConfig = field(default_factory=APFConfig)   # StructNet-Avg(A)-APF (docs/apf.md)
    # output
    json_path: str = ""                # the result objects as JSON (docs/eval.md); "" = none
    figures_dir: str = ""              # Figure 4 and the skeletons (and Figure 3 with a sweep); "" = none (a
                                       # sweep then draws Figure 3 into <run dir>/eval)
    progress: bool = True              # progress bars on stderr

    def __post_init__(self):
        self.subjects = h36m.parse_subjects(self.subjects)
        self.actions, self.modes, self.best_of = tuple(self.actions), tuple(self.modes), tuple(self.best_of)
        self.sweep = self.sweep if self.sweep == "auto" else tuple(self.sweep)
        if self.export_k and not self.export_path:
            raise ValueError("export_k needs an export_path")

    def to_dict(self):
        d = asdict(self)
        for k in ("subjects", "actions", "modes", "sweep", "best_of"):
            d[k] = d[k] if isinstance(d[k], str) else list(d[k])
        d["apf"]["stages"] = list(d["apf"]["stages"])
        return d


def _floor_context(output):
    """The bank floor in the JSON context: MPJPE of the nearest bank pose, over all frames, over
    actions and per action ({"mean", "std", "n"})."""
    s = summarize(output.bank_floor, output.actions)
    return {"mpjpe_all_frames": s["all_frames"], "mpjpe_action_mean": s["action_mean"], "per_action": s["per_action"]}


def run_evaluation(cfg, log=print, comm=None):
    """Evaluate cfg.run on the test rows: every mode, Table 1, the P-MPJPE table and the alignment
    statistic printed through log; the JSON, the top-k file and the figures written where cfg says.
    Returns the list of result objects (the JSON). EvalError for anything the user can fix.
    comm (nn.comm): the ranks share the work (Evaluator); rank 0 alone prints and writes, the
    others return None."""
    comm = comm or Comm()
    say = log if comm.root else (lambda *a, **k: None)
    modes = cfg.modes
    model_path, pretrain_path = resolve_run(cfg.run)
    if "hml" in modes and pretrain_path is None:
        if cfg.modes_explicit:
            raise EvalError(f"mode hml (DconvMP-HML) needs pretrain_model.npz beside {model_path}")
        say(f"note: no pretrain_model.npz beside {model_path}: DconvMP-HML (hml) skipped")
        modes = tuple(m for m in modes if m != "hml")
    if cfg.bvh_dir:
        if "apf" not in modes:
            raise EvalError("--export-bvh writes the StructNet-Avg(A)-APF poses: add apf to --mode")
        bvh_export.prepare_directory(cfg.bvh_dir)
    ev = Evaluator(cfg.run, cfg.data or None, cfg.device, cache=cfg.cache, hml="hml" in modes, log=say, comm=comm,
                   shard_bank=cfg.shard_bank)
    M = ev.bank_size
    A_auto = cfg.A is None
    A = default_A(M) if A_auto else min(int(cfg.A), M)
    subjects = list(cfg.subjects)
    idx = ev.test_rows(subjects, list(cfg.actions) or None, cfg.max_images)
    present = [s for s in subjects if s in set(ev.dataset.metadata(idx)["subject"].tolist())]
    if A_auto:
        rule = f"default: 0.5% of the {M}-pose bank, as the paper's 500 of ~100k"
    else:
        rule = "given" if A == cfg.A else f"--A {cfg.A} clipped to the {M}-pose bank"
    report.print_setup(ev, A, rule, present, len(idx), cfg.max_images, say)

    test_meta = ev.dataset.metadata(idx)
    keep = report.skeleton_rows(idx, test_meta["subject"], test_meta["action"]) if cfg.figures_dir else ()
    sweep = sweep_values(cfg.sweep, M) if cfg.sweep else ()
    for name, values in (("--sweep-A", () if cfg.sweep == "auto" else cfg.sweep), ("--export-topk", [cfg.export_k]),
                         ("--best-of", cfg.best_of)):
        over = [str(a) for a in values if a > M]
        if over:
            say(f"note: {name} {','.join(over)} clipped to the {M}-pose bank")
    vp3d_mode = next(m for m in PREFERRED if m in modes) if cfg.vp3d_path or cfg.vp3d_world_path else None
    output = ev.run(idx, modes, A, sweep=sweep, export_k=cfg.export_k, apf_config=cfg.apf,
                    batch_size=cfg.batch_size, chunk=cfg.bank_chunk, keep_rows=keep, progress=cfg.progress,
                    best_of=cfg.best_of, retrieval=cfg.retrieval, retrieval_mm=cfg.retrieval_mm,
                    keep_mode=vp3d_mode or ("apf" if cfg.bvh_dir else None))
    align = None
    if cfg.train_images > 0:
        align = ev.alignment(cfg.train_images, cfg.batch_size, cfg.bank_chunk, keep_embeddings=bool(cfg.figures_dir),
                             progress=cfg.progress)
    if not comm.root:
        return None
    context = {"model": ev.model_path, "pretrain_model": ev.pretrain_path if "hml" in modes else None,
               "data": ev.data_path, "device": cfg.device, "bank_poses": M,
               "bank_with_images": int((ev.bank.rows >= 0).sum()), "bank_rate_hz": ev.dataset.bank_rate_hz,
               "bank_subjects": list(ev.train_subjects),
               "A_rule": rule, "max_images": cfg.max_images, "distinct_top1": output.distinct_top1,
               "mean_pose_mpjpe": output.mean_pose_mpjpe,
               "bank_floor": _floor_context(output),
               "best_of": report.best_of_results(output),
               "retrieval": output.retrieval,
               "test_rows_first_last": [int(idx[0]), int(idx[-1])],
               "apf": asdict(cfg.apf) if "apf" in modes else None,
               "train_alignment": {k: v for k, v in align.items() if k not in ("f_I", "f_J", "poses", "rows")}
               if align else None,
               "seconds": {k: round(v, 3) for k, v in output.seconds.items()}}
    results = report.mode_results(output, modes, present, context)
    report.print_results(results, output, align, modes, present, say)

    if cfg.json_path:
        report.write_json(cfg.json_path, results)
        say(f"wrote {cfg.json_path}")
    if cfg.export_k:
        report.save_topk(cfg.export_path, output, ev.bank, cfg.export_k, ev.dataset)
        say(f"wrote {cfg.export_path}: top-{min(cfg.export_k, M)} poses and scores of {len(idx)} test images")
    for path, world in ((cfg.vp3d_path, False), (cfg.vp3d_world_path, True)):
        if path:
            report.save_vp3d(path, output, vp3d_mode, ev.dataset, world=world)
            say(f"wrote {path}: {method_name(vp3d_mode, A)} poses of {len(idx)} test images in VideoPose3D's layout "
                f"(positions_3d, metres, {'world' if world else 'camera'} coordinates)")
    if cfg.bvh_dir:
        bvh_export.export_evaluation(cfg.bvh_dir, output, ev, say)
    fig_dir = cfg.figures_dir or (os.path.join(os.path.dirname(ev.model_path), "eval") if cfg.sweep else "")
    if fig_dir:
        for path in report.write_figures(ev, output, modes, results, align, fig_dir, sweep, bool(cfg.figures_dir),
                                         say):
            say(f"wrote {path}")
    return results
