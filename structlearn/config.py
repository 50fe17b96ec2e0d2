"""Training configuration: every hyper-parameter of Algorithm 1 and of the pre-training, with
the paper's values where it gives them (Sec. 5.3) and CPU-sized defaults where it does not.
The resolved configuration is saved beside every checkpoint; resuming compares them."""
from dataclasses import asdict, dataclass, fields

from data import flags
from data.h36m import TRAIN_SUBJECTS

STAGES = ("pretrain", "structnet", "all")
# fields that may differ between a checkpoint and a resumed run (they do not change the result
# of the epochs already done)
RESUMABLE_CHANGES = {"epochs", "pretrain_epochs", "resume", "out", "progress", "checkpoint_every", "stop_after",
                     "eval_every"}
# the domain of every numeric field (data.flags), checked by structlearn.train.validate_config
DOMAINS = {
    "synth_scale": flags.positive_float, "seed": flags.non_negative_int, "checkpoint_every": flags.positive_int,
    "stop_after": flags.non_negative_int, "eval_every": flags.non_negative_int, "dropout": flags.fraction,
    "pretrain_epochs": flags.non_negative_int, "pretrain_batch_size": flags.positive_int,
    "pretrain_lr": flags.positive_float, "pretrain_momentum": flags.fraction, "detect_weight": flags.non_negative_float,
    "pretrain_dropout": flags.fraction, "epochs": flags.non_negative_int, "batch_size": flags.positive_int,
    "candidates": flags.positive_int, "frequent": flags.non_negative_int, "lam": flags.non_negative_float,
    "alpha": flags.non_negative_float, "margin_scale": flags.non_negative_float, "ls_min": flags.positive_float,
    "ls_max": flags.positive_float, "ls_points": flags.int_at_least(2), "adam_lr": flags.positive_float,
    "adam_decay": flags.positive_float, "noise_std": flags.non_negative_float, "width": flags.non_negative_int,
    "input_size": flags.non_negative_int,
}
_FLAGS = {"candidates": "--candidates (C)", "frequent": "--frequent (K)", "ls_reselect": "--ls-fixed"}
# Named bundles of defaults (run_train.py --recipe NAME; explicit flags still win). "paper" is Sec. 5.3
# to the letter, where the default departs from it by measurement (README, "Where this departs").
# "long" is the long recipe of the README (3x the training images, twice the width, 48 epochs;
# about 1.5 h on 2 cores, measured).
RECIPES = {
    "paper": dict(dropout=0.75, optimizer="linesearch"),
    "long": dict(synth_scale=3.0, width=512, epochs=48),
}


def flag(field):
    """run_train.py's flag of a TrainConfig field, for messages."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


@dataclass
class TrainConfig:
    # data and run
    data: str = ""                     # HDF5 file; "" = the embedded synthetic dataset (generated on first use)
    synth_scale: float = 1.0           # size of the synthetic dataset when generated
    synth_rooms: str = "lab"           # the synthetic dataset's rooms: one capture lab, or "random" per sequence
    subjects: tuple = TRAIN_SUBJECTS   # training subjects
    actions: tuple = ()                # () = all actions
    out: str = "runs/latest"
    preset: str = "cpu"                # network preset, structlearn.network.PRESETS
    seed: int = 0
    device: str = "cpu"
    stage: str = "all"
    resume: bool = False
    progress: bool = True
    checkpoint_every: int = 50         # mini-batches between checkpoints (and at every epoch end)
    stop_after: int = 0                # stop (with a checkpoint) after this many mini-batches; 0 = never
    eval_every: int = 0                # learning curves: evaluate every N max-margin epochs and at the end
                                       # (structlearn.curves, <out>/curves.jsonl); 0 = off. Changes no result
    pretrained: str = ""               # pre-trained network for --stage structnet ("" = <out>/pretrain_model.npz, "none" = random convolutions)
    # network (the preset's other sizes stay as structlearn.network.PRESETS gives them)
    pose_embedding: str = "2layer"     # Table 3: raw, random1, 1layer, 2layer
    dropout: float = 0.0               # on the inputs of h1, h2; the paper's 0.75 (--recipe paper) fits 5x worse
    width: int = 0                     # units of h1-h6 (hidden and embedding); 0 = the preset's
    input_size: int = 0                # crops fed to conv1 (NetConfig.at_input_size); 0 = the preset's (cpu 56, paper 112)
    # pre-training (reference [18]: pose regression + joint detection)
    pretrain_epochs: int = 12
    pretrain_batch_size: int = 64
    pretrain_lr: float = 0.003
    pretrain_momentum: float = 0.9
    detect_weight: float = 1.0
    pretrain_dropout: float = 0.0      # dropout of the pre-training network (the paper's 0.75 is for StructNet)
    # Algorithm 1
    epochs: int = 24
    batch_size: int = 128
    candidates: int = 2000             # C
    frequent: int = 10                 # K
    lam: float = 1.0                   # lambda, weight of the auxiliary pose prediction (eq. 12)
    alpha: float = 1e-4                # weight decay (eq. 12)
    margin_scale: float = 0.1          # Delta = margin_scale * MPJPE in mm (eq. 8): 0.1 = centimetres
    ls_min: float = 1e-7               # line-search grid (Sec. 5.3: [1e-7, 1e2])
    ls_max: float = 1e2
    ls_points: int = 10
    ls_reselect: bool = True           # re-select y_hat among the candidates at every trial step (eq. 12's
                                       # cost depends on theta through y_hat, footnote 1) instead of keeping D fixed
    optimizer: str = "adam"            # Adam on eq. 12's cost; "linesearch": Algorithm 1's grid line search + SGD
                                       # step (the paper's, --recipe paper), which fits 5x worse
    adam_lr: float = 1e-3              # the Adam rate, with --optimizer adam
    adam_decay: float = 1.0            # Adam's rate x this for the last quarter of the epochs (last_quarter_rate); 1 = constant
    noise_std: float = 0.1             # PCA colour noise (Sec. 5.1)
    train_convs: bool = False          # the paper fixes the convolutions in this stage
    # execution: nn.conv_tune's policy (auto: measured per layer shape and pass, cached per machine;
    # fixed: fft for stride 1 on the CPU, else im2col; fft; im2col). The choices change rounding
    # only; a run records them (conv_algorithms.json, checkpoint) and a resume repeats them
    conv_algorithm: str = "fixed"      # reproducible by default; auto is opt-in (nn/conv_tune.py)

    def __post_init__(self):
        self.subjects = tuple(self.subjects)
        self.actions = tuple(self.actions)

    def to_dict(self):
        d = asdict(self)
        d["subjects"], d["actions"] = list(self.subjects), list(self.actions)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def differences(self, other):
        """Fields (other than RESUMABLE_CHANGES) whose values differ: [(name, mine, theirs)]."""
        a, b = self.to_dict(), other.to_dict()
        return [(k, a[k], b.get(k)) for k in a if k not in RESUMABLE_CHANGES and a[k] != b.get(k)]
