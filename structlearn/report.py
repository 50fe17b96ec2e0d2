"""What an evaluation prints and writes: Table 1 (Protocol #1), the P-MPJPE (Protocol #2) and
N-MPJPE tables, best-of-k and retrieval as text, the result objects of --json (schema:
docs/eval.md), the top-k and VideoPose3D exports and which figures are drawn from what (the
drawing itself: structlearn.figures)."""
import json
import os

import numpy as np

from data import h36m
from data.dataset import root_relative
from data.files import write_text_atomic
from data.vp3d import save_positions_3d, to_world
from nn.params import save_npz_atomic

from .evaluate import METRICS, PAPER_MODES, PREFERRED, USES_A, method_name, summarize

TITLES = {"mpjpe": "Table 1, Protocol #1 (MPJPE), mm, on {subjects}: mean (std) over the frames of each action",
          "pmpjpe": "Protocol #2 (P-MPJPE), mm, after a similarity Procrustes alignment per frame: mean (std) over "
                    "frames",
          "n_mpjpe": "N-MPJPE (scale-aligned), mm, after the least-squares scale per frame: mean (std) over frames"}


# ============================================================================ result objects
def metric_fields(name, values, actions):
    """The JSON fields of one per-frame metric (N,): name (per action {"mean", "std", "n"}),
    name_all_frames, name_all_frames_std, name_action_mean."""
    m = summarize(values, actions)
    return {name: m["per_action"], f"{name}_all_frames": m["all_frames"],
            f"{name}_all_frames_std": m["all_frames_std"], f"{name}_action_mean": m["action_mean"]}


def mode_results(output, modes, subjects, context=None):
    """The JSON objects of run_eval --json: one per mode, then one per sweep value of A (mode
    "avg", "sweep": true). See docs/eval.md for the schema."""
    objs = []

    def obj(mode, A, errors, sweep=False):
        fields = {}
        for name in METRICS:          # an output without a metric (older callers) leaves its keys out
            if name in errors:
                fields.update(metric_fields(name, errors[name], output.actions))
        return {"mode": mode, "method": method_name(mode, A), "in_paper": mode in PAPER_MODES,
                "A": A, "A_share": A / output.bank_size if A and output.bank_size else None, "sweep": sweep,
                "subjects": list(subjects),
                "actions": list(fields["mpjpe"]), "n_frames": int(len(errors["mpjpe"])),
                **fields, "context": context or {}}

    for mode in modes:
        A = output.A if mode in USES_A else (1 if mode == "max" else None)
        objs.append(obj(mode, A, {name: getattr(output, name)[mode] for name in METRICS
                                  if mode in getattr(output, name)}))
    for a, v in output.sweep.items():
        objs.append(obj("avg", a, v, sweep=True))
    return objs


def best_of_results(output):
    """context.best_of of the JSON: per k, {"k", "method": "Best-of-k", "n_frames", "mpjpe",
    "mpjpe_all_frames", "mpjpe_all_frames_std", "mpjpe_action_mean"} of the best-of-k MPJPE."""
    return [{"k": int(k), "method": f"Best-of-{k}", "n_frames": int(len(v)),
             **metric_fields("mpjpe", v, output.actions)} for k, v in output.best_of.items()]


# ============================================================================ export
def save_topk(path, output, bank, k, dataset):
    """Multiple hypotheses per test image (npz): poses (N,k,17,3) root-relative mm, scores (N,k)
    best first, bank_index (N,k) entries of the data file's pose bank (PoseDataset.bank_poses),
    bank_rows (N,k) the image rows showing them (-1: a pose-only entry of the dense bank), and
    per image rows, subject, action, camera, frame and gt (N,17,3)."""
    pos = output.topk["bank_index"][:, :k]
    meta = dataset.metadata(output.rows)
    save_npz_atomic(path, {
        "poses": bank.poses[pos], "scores": output.topk["scores"][:, :k], "bank_index": bank.index[pos],
        "bank_rows": bank.rows[pos], "rows": output.rows,
        "subject": meta["subject"].astype(str), "action": meta["action"].astype(str),
        "camera": meta["camera"].astype(str), "frame": meta["frame"],
        "gt": root_relative(dataset.poses(output.rows)).astype(np.float32)})


def save_vp3d(path, output, mode, dataset, world=False):
    """The predictions of mode in VideoPose3D's layout (data.vp3d.save_positions_3d, metres),
    with the ground truth as positions_3d_gt and the mode's name. Camera coordinates, root-
    relative; world=True: world coordinates (z up) by the file's extrinsics of each test image's
    subject and camera (PoseDataset.extrinsics), the predictions placed at the true root (they are
    root-relative) and the ground truth absolute, as in VideoPose3D's data_3d_h36m.npz."""
    meta = dataset.metadata(output.rows)
    poses, gt = output.predictions[mode], output.gt
    coordinates = "camera coordinates, root-relative (joint 0 at the origin)"
    if world:
        absolute = dataset.poses(output.rows).astype(np.float64)
        poses = to_world(np.asarray(poses, dtype=np.float64) + absolute[:, :1], meta, dataset.extrinsics)
        gt = to_world(absolute, meta, dataset.extrinsics)
        coordinates = "world coordinates (z up), the predictions placed at the true root (joint 0)"
    save_positions_3d(path, poses, meta, extra={"positions_3d_gt": gt}, mode=mode,
                      method=method_name(mode, output.A).rstrip("*"), coordinates=coordinates)


def write_json(path, results):
    """Atomic JSON write of the result list."""
    write_text_atomic(path, json.dumps(results, indent=1))


# ============================================================================ printing
def format_table(results, metric="mpjpe", title=""):
    """Table 1 as text: one row per action, one column per result (mean (std) over frames), then
    the mean over all frames and the mean over actions."""
    cols = [r["method"].replace("StructNet-", "") for r in results]
    actions = list(results[0][metric])
    width = max(16, *(len(c) + 2 for c in cols))
    lines = [title] if title else []
    if any(r["method"].startswith("StructNet-") for r in results):
        lines.append("(columns: StructNet-<column>" + ("; DconvMP-HML: the multi-task baseline of [18])"
                                                       if any(r["mode"] == "hml" for r in results) else ")"))
    head = f"{'Action':<14}{'frames':>7}" + "".join(f"{c:>{width}}" for c in cols)
    lines += [head, "-" * len(head)]
    for a in actions:
        cells = "".join(f"{r[metric][a]['mean']:>{width - 8}.2f} ({r[metric][a]['std']:5.1f})"
                        if a in r[metric] else f"{'-':>{width}}" for r in results)
        lines.append(f"{a:<14}{results[0][metric][a]['n']:>7}" + cells)
    lines.append("-" * len(head))
    lines.append(f"{'All (frames)':<14}{results[0]['n_frames']:>7}" + "".join(
        f"{r[metric + '_all_frames']:>{width - 8}.2f} ({r[metric + '_all_frames_std']:5.1f})" for r in results))
    lines.append(f"{'All (actions)':<14}{len(actions):>7}" + "".join(
        f"{r[metric + '_action_mean']:>{width - 8}.2f}{'':>8}" for r in results))
    return "\n".join(lines)


def format_hits(rows, ks):
    """A Hit@k table: rows [(label, queries, gallery, {"1": share, ...})] -> text, shares in %."""
    head = f"{'':<24}{'queries':>8}{'gallery':>9}" + "".join(f"{'Hit@' + str(k):>9}" for k in ks)
    lines = [head, "-" * len(head)]
    for label, queries, gallery, hits in rows:
        lines.append(f"{label:<24}{queries:>8}{gallery:>9}" + "".join(f"{100 * hits[str(k)]:>8.1f}%" for k in ks))
    return lines


def format_retrieval(r):
    """The retrieval results (EvalOutput.retrieval) as text: image-to-pose over the bank, per query
    camera, then cross-view per camera pair and over all other cameras."""
    ks, ip, cv = r["ks"], r["image_to_pose"], r["cross_view"]
    lines = [f"Retrieval, Hit@k: the share of queries with a hit among their k best-ranked; a hit: {r['rule']}"]
    lines.append(f"image-to-pose: the {ip['bank_poses']} training bank poses ranked by the score <f_I, f_J>")
    lines += format_hits([(f"camera {c['camera']}", c["queries"], ip["bank_poses"], c["hit_at_k"])
                          for c in ip["per_camera"]] + [("All", ip["queries"], ip["bank_poses"],
                                                          ip["overall"]["hit_at_k"])], ks)
    lines.append("cross-view (Mitra et al.): the test images of the other cameras ranked by <f_I, f_I'>")
    rows = [(f"{p['query_camera']} -> {p['gallery_camera']}", p["queries"], p["gallery"], p["hit_at_k"])
            for p in cv["pairs"]]
    if cv["overall"] is None:
        lines.append("(one camera only: no cross-view retrieval)")
    else:
        lines += format_hits(rows + [("All -> other cameras", cv["queries"], "", cv["overall"]["hit_at_k"])], ks)
    return "\n".join(lines)


def print_setup(ev, A, A_rule, present, n_images, max_images, say=print):
    """The lines before the evaluation: the model, the pose bank, A and the test set."""
    cfg = ev.model.net.cfg
    say(f"model: {ev.model_path} (input {cfg.input_size}x{cfg.input_size}, embedding {ev.bank.emb.shape[1]}-d, "
        f"{cfg.pose_embedding} pose embedding); data: {ev.data_path}")
    kind = (f"the file's pose bank at {ev.dataset.bank_rate_hz:g} Hz, {int((ev.bank.rows >= 0).sum())} of them "
            "with an image" if ev.dataset.has_bank else "the training images' poses: the file has no pose bank")
    say(f"pose bank: {ev.bank_size} training poses of {','.join(ev.train_subjects)} ({kind}); embeddings "
        f"{ev.bank.source} ({ev.bank_seconds:.2f} s)")
    say(f"A = {A} ({A_rule}); test: {','.join(present)}, {n_images} images"
        + (f" (evenly spaced subset, --max-images {max_images})" if max_images else ""))
    overlap = sorted(set(present) & set(ev.train_subjects))
    if overlap:
        say(f"note: {','.join(overlap)} are training subjects: their poses are in the bank")


def print_results(results, output, align, modes, present, say=print):
    """Table 1 (Protocol #1, MPJPE), the P-MPJPE and N-MPJPE tables, best-of-k, retrieval, the sweep
    over A, the alignment statistic and the sanity references (distinct max-score poses, the mean
    pose's error, the bank floor, timings)."""
    main = [r for r in results if not r["sweep"]]
    for name in METRICS:
        if name in main[0]:
            say("")
            say(format_table(main, name, TITLES[name].format(subjects=",".join(present))))
    context = main[0]["context"]
    if context.get("best_of"):
        say("")
        say(format_table(context["best_of"], "mpjpe", "Best-of-k MPJPE (mm; the multi-hypothesis oracle): the "
                                                      "lowest MPJPE among StructNet's k highest-scoring bank poses"))
    if context.get("retrieval"):
        say("")
        say(format_retrieval(context["retrieval"]))
    swept = [r for r in results if r["sweep"]]
    if swept:
        say("")
        say("StructNet-Avg(A) versus A (Figure 3), MPJPE (mm): "
            + ", ".join(f"A={r['A']} ({100 * r['A_share']:.2g}% of the bank): {r['mpjpe_all_frames']:.2f} / "
                        f"{r['mpjpe_action_mean']:.2f}" for r in swept)
            + "  (all frames / mean of actions)")
    say("")
    say("All (frames): mean over every test frame; All (actions): unweighted mean of the per-action means; "
        "std over frames (ddof 0).")
    if "ik" in modes:
        say("* StructNet-Avg(A)-IK is not in the paper: skeleton.forward(skeleton.inverse(Avg(A))) with the test "
            "subject's skeleton; the paper's valid-pose variant is StructNet-Avg(A)-APF.")
    if align:
        say(f"training-set alignment: {100 * align['share_30mm']:.1f}% of {align['images']} training images have "
            f"their max-score pose within 30 mm MPJPE of the ground truth (median {align['median_mm']:.1f} mm; "
            "paper: 97%)")
        if align["f_I_relative_spread"] < 1e-3:
            say(f"warning: the image embedding is nearly the same for every training image (spread "
                f"{align['f_I_relative_spread']:.1e} of its size): the model looks collapsed")
    if output.distinct_top1:
        say(f"max-score poses: {output.distinct_top1} distinct bank poses over {len(output.rows)} test images")
    say(f"reference: the mean training pose, predicted for every test image, has MPJPE {output.mean_pose_mpjpe:.2f} mm "
        "(all frames)")
    if output.bank_floor is not None:
        say(f"bank floor: the nearest bank pose to each test pose (the best any retrieval from the "
            f"{output.bank_size}-pose bank could do) has MPJPE {float(np.mean(output.bank_floor)):.2f} mm (all frames)")
    say("time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in output.seconds.items() if v > 0))


# ============================================================================ figures
def skeleton_rows(rows, subjects, actions, n=6):
    """Up to n test rows for the skeleton picture: evenly spaced actions, the subjects taken in
    turn, the middle image of each (subject, action)."""
    names = [a for a in h36m.ACTIONS if a in set(actions.tolist())]
    subs = [s for s in h36m.ALL_SUBJECTS if s in set(subjects.tolist())]
    picks = [names[i] for i in np.unique(np.round(np.linspace(0, len(names) - 1, min(n, len(names)))).astype(int))]
    out = []
    for i, a in enumerate(picks):
        r = rows[(actions == a) & (subjects == subs[i % len(subs)])]
        if len(r) == 0:
            r = rows[actions == a]
        out.append(int(r[len(r) // 2]))
    return np.array(out, dtype=np.int64)


def write_figures(ev, output, modes, results, align, figures_dir, sweep, full, say):
    """Draw into figures_dir what the evaluation has the data for; returns the paths written.

    Figure 3 when A was swept, Figure 4 when the alignment kept the training embeddings, the
    skeletons when test rows were kept (output.keep_rows), best-of-k against k with --figures
    (full; a missing Figure 4 then deserves a note).
    """
    from . import figures  # matplotlib only when figures are drawn
    os.makedirs(figures_dir, exist_ok=True)
    written = []
    if sweep:
        points = {r["A"]: (r["mpjpe_all_frames"], r["mpjpe_action_mean"]) for r in results if r["sweep"]}
        mx = next(((r["mpjpe_all_frames"], r["mpjpe_action_mean"]) for r in results if r["mode"] == "max"), None)
        written.append(figures.figure3(os.path.join(figures_dir, "fig3_error_vs_A.png"), points, ev.bank_size, mx,
                                       paper_A=output.A))
    if align is not None and "f_I" in align:
        rows = align["rows"]
        subjects = ev.dataset.metadata(rows)["subject"]
        mask = subjects == subjects[0]
        images = ev.dataset.read_images(rows)
        written.append(figures.figure4(os.path.join(figures_dir, "fig4_embedding.png"), align["f_I"],
                                       align["f_J"], images, align["poses"], image_mask=mask))
    elif full:
        say("note: Figure 4 needs training images (--train-images > 0); skipped")
    best = results[0]["context"].get("best_of") if results else None
    if full and best and len(best) > 1:
        refs = {r["method"]: r["mpjpe_all_frames"] for r in results if not r["sweep"] and r["mode"] in ("max", "avg")}
        floor = float(np.mean(output.bank_floor)) if output.bank_floor is not None else None
        written.append(figures.best_of_figure(os.path.join(figures_dir, "best_of_k.png"), best, floor, refs))
    if len(output.keep_rows):
        shown = [m for m in PREFERRED if m in modes][:1]
        if "max" in modes and shown != ["max"]:
            shown.append("max")
        rows = output.keep_rows
        meta = ev.dataset.metadata(rows)
        absolute = ev.dataset.poses(rows).astype(np.float64)
        root = absolute[:, :1]
        images = ev.dataset.read_images(rows)
        preds = {method_name(m, output.A): output.kept[m] for m in shown}
        joints2d = {"ground truth": ev.dataset.crop_joints(rows)}
        for label, p in preds.items():
            joints2d[label] = ev.dataset.crop_joints(rows, poses=p + root)
        titles = [f"{s} {a}, camera {c}, frame {f}" for s, a, c, f in
                  zip(meta["subject"], meta["action"], meta["camera"], meta["frame"])]
        written.append(figures.skeleton_figure(os.path.join(figures_dir, "skeletons.png"), images, joints2d,
                                               output.kept_gt, preds, titles))
    return written
