"""The StructNet score network (Sec. 3, Fig. 1) with hand-written forward and backward passes.

    conv stack (Sec. 3.1): conv1 -> pool -> ReLU -> conv2 -> pool -> ReLU -> conv3 -> pool (linear)
        f2 = flatten(pooled conv2), f3 = flatten(pooled conv3)          (conv^2(x), conv^3(x))
    image embedding (eq. 2):  f_I = h4(h3([h1(drop(f2)); h2(drop(f3))]))
    pose embedding  (eq. 3):  f_J = h6(h5(y))           (or a Table 3 variant, POSE_EMBEDDINGS)
    score           (eq. 4):  f_S = <f_I, f_J>
    auxiliary pose  (eq. 10): f_P = g7(h3) = tanh(W7^T h3 + b7)

Every h_i is ReLU(W_i^T x + b_i). Pooling is applied before the ReLU: max-pooling commutes with a
monotone function (ties included, the gradient is the same), and the ReLU then touches 4x fewer
values. Dropout (rate 0.75 in the paper) acts on the inputs of h1 and h2, the layers the paper
names ("We use dropout in the fully-connected layers {h1, h2}").

Poses enter the network normalised: y_n = encoding.PoseNormalizer.normalize(root-relative pose), (.., 51),
inside (-1, 1) on the training set, so the same vector is the tanh target of eq. 11.

Figure 1's layer sizes are not in the text; PRESETS["paper"] uses conv1 9x9x32, conv2 5x5x32,
conv3 5x5x64, 2x2 pooling, 112x112 inputs and 1024-unit fully connected layers (the sizes of the
project's PyTorch peer). PRESETS["cpu"] is a smaller network on 56x56 inputs (the 128x128 crops
downsampled by 2) that trains in minutes on two cores; PRESETS["tiny"] is for tests.
"""
from dataclasses import asdict, dataclass, replace

import numpy as np

from data.h36m import N_JOINTS, POSE_DIM
from nn import Conv2D, Dropout, Linear, MaxPool2D, Params, ReLU, Tanh, backend, nchw_to_hwnc
from nn.plumbing import concat, flatten_hwnc, split, unflatten_hwnc

POSE_EMBEDDINGS = ("raw", "random1", "1layer", "2layer")  # Table 3


@dataclass(frozen=True)
class NetConfig:
    input_size: int = 112                           # square crop fed to conv1
    downsample: int = 1                             # 128x128 images are box-downsampled first
    convs: tuple = ((9, 32), (5, 32), (5, 64))      # (kernel, channels); each followed by 2x2 pooling
    hidden: int = 1024                              # h1, h2, h3
    embed: int = 1024                               # h4 (image) and h5, h6 (pose): the joint space
    pose_embedding: str = "2layer"                  # one of POSE_EMBEDDINGS
    dropout: float = 0.75                           # on the inputs of h1 and h2
    detect_grid: int = 8                            # pre-training: joints classified into grid x grid cells

    def __post_init__(self):
        if self.pose_embedding not in POSE_EMBEDDINGS:
            raise ValueError(f"unknown pose embedding {self.pose_embedding!r}: expected one of {POSE_EMBEDDINGS}")
        if len(self.convs) != 3:
            raise ValueError(f"StructNet has 3 convolution layers, got {len(self.convs)}")

    def to_dict(self):
        d = asdict(self)
        d["convs"] = [list(c) for c in self.convs]
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["convs"] = tuple(tuple(c) for c in d["convs"])
        return cls(**d)

    def with_(self, **changes):
        return replace(self, **changes)

    def at_input_size(self, size, image_size=128):
        """This network fed size x size crops of image_size images, box-downsampled by the largest
        factor that divides image_size and leaves the random crop at least 1/8 of margin (the
        presets' rule: 112 of 128, 56 of 64, 28 of 32). ValueError when the crop does not fit."""
        size, image_size = int(size), int(image_size)
        down = max(1, 7 * image_size // (8 * max(size, 1)))
        while down > 1 and image_size % down:
            down -= 1
        if not 1 <= size <= image_size // down:
            raise ValueError(f"input size {size}: expected 1 to {image_size} (the images are {image_size} px)")
        cfg = replace(self, input_size=size, downsample=down)
        try:
            ConvStack(cfg)
        except ValueError:
            raise ValueError(f"input size {size} is too small for the convolutions {self.convs} (kernel, channels; "
                             "each followed by 2x2 pooling)") from None
        return cfg


PRESETS = {
    "paper": NetConfig(),
    "cpu": NetConfig(input_size=56, downsample=2, convs=((5, 16), (5, 32), (3, 32)), hidden=256, embed=256,
                     detect_grid=7),
    # for tests and smoke runs: 32x32 images (downsampled by 4), cropped to 28x28
    "tiny": NetConfig(input_size=28, downsample=4, convs=((5, 8), (3, 8), (3, 8)), hidden=32, embed=32,
                      detect_grid=4),
}


class ConvStack:
    """conv1-3 with pooling; image (N, 3, S, S) -> (f2 (N, d2), f3 (N, d3))."""

    def __init__(self, cfg):
        self.cfg = cfg
        channels = [3] + [c for _, c in cfg.convs]
        self.convs = [Conv2D(f"conv{i + 1}", channels[i], channels[i + 1], k,
                             activation="relu" if i < 2 else "linear")
                      for i, (k, _) in enumerate(cfg.convs)]
        self.pools = [MaxPool2D(f"pool{i + 1}", 2) for i in range(3)]
        self.relus = [ReLU(f"relu{i + 1}") for i in range(2)]
        size, self.maps = cfg.input_size, []
        for conv in self.convs:
            size = conv.output_shape(size, size)[0] // 2
            if size < 1:
                raise ValueError(f"input size {cfg.input_size} is too small for the convolutions {cfg.convs}")
            self.maps.append((size, size, conv.out_c))
        self.d2 = int(np.prod(self.maps[1]))
        self.d3 = int(np.prod(self.maps[2]))

    @property
    def layers(self):
        return self.convs

    def conv_passes(self, n, dtype=np.float32, backward=True):
        """[(label, conv, HWNC input shape, dtype, passes)] of conv1-3 on a batch of n images (for
        nn.conv_tune.plan): the forward and, with backward, the weight gradient and (but for conv1,
        whose input is the image) the input gradient."""
        out, size, c = [], self.cfg.input_size, 3
        for i, conv in enumerate(self.convs):
            shape = (size, size, n, c)
            passes = ("forward",) + (("weight_grad", "input_grad")[:1 if i == 0 else 2] if backward else ())
            out.append((f"{conv.name} {'x'.join(map(str, shape))}", conv, shape, np.dtype(dtype), passes))
            size, c = conv.output_shape(size, size)[0] // 2, conv.out_c
        return out

    def _check_images(self, images):
        if images.ndim != 4 or images.shape[1:] != (3, self.cfg.input_size, self.cfg.input_size):
            raise ValueError(f"conv stack: expected images (N, 3, {self.cfg.input_size}, {self.cfg.input_size}), "
                             f"got {tuple(images.shape)}")

    def forward(self, params, images):
        """images (N, 3, S, S) float -> (f2, f3), cache."""
        self._check_images(images)
        h = nchw_to_hwnc(images)
        caches, outs = [], []
        for i, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            h, c_conv = conv.forward(params, h)
            h, c_pool = pool.forward(params, h)
            c_relu = None
            if i < 2:
                h, c_relu = self.relus[i].forward(params, h)
            caches.append((c_conv, c_pool, c_relu))
            outs.append(h)
        (f2, shape2), (f3, shape3) = flatten_hwnc(outs[1]), flatten_hwnc(outs[2])
        return (f2, f3), {"layers": caches, "shapes": (shape2, shape3)}

    def features(self, params, images):
        """forward's (f2, f3) alone, for passes no backward follows (inference, Algorithm 1's
        search with the convolutions fixed): the same values, without the pooling's argmax indices
        and with the ReLUs in place."""
        self._check_images(images)
        h, outs = nchw_to_hwnc(images), []
        xp = backend.get_array_module(images)
        for i, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            h = pool.forward_values(conv.forward(params, h)[0])
            if i < 2:
                xp.maximum(h, 0, out=h)               # ReLU's values (nn.ReLU.forward)
            outs.append(h)
        return flatten_hwnc(outs[1])[0], flatten_hwnc(outs[2])[0]

    def backward(self, params, cache, g2, g3):
        """Gradients of the conv weights from d/df2 and d/df3 (the input image needs none)."""
        grads = {}
        shape2, shape3 = cache["shapes"]
        g = unflatten_hwnc(g3, shape3)
        for i in reversed(range(3)):
            c_conv, c_pool, c_relu = cache["layers"][i]
            if i == 1:
                g = g + unflatten_hwnc(g2, shape2)  # conv2's pooled output feeds h1 and conv3
            if c_relu is not None:
                g, _ = self.relus[i].backward(params, c_relu, g)
            g, _ = self.pools[i].backward(params, c_pool, g)
            g, gp = self.convs[i].backward(params, c_conv, g, need_gx=i > 0)
            grads.update(gp)
        return grads


class ImageBranch:
    """h1, h2 (with dropout on their inputs), concat, h3; then h4 (the embedding) and g7 (eq. 10)."""

    def __init__(self, cfg, d2, d3, out_dim=None):
        self.cfg = cfg
        self.drop1 = Dropout("drop1", cfg.dropout)
        self.drop2 = Dropout("drop2", cfg.dropout)
        self.h1 = Linear("h1", d2, cfg.hidden)
        self.h2 = Linear("h2", d3, cfg.hidden)
        self.h3 = Linear("h3", 2 * cfg.hidden, cfg.hidden)
        self.h4 = Linear("h4", cfg.hidden, out_dim or cfg.embed)
        self.g7 = Linear("g7", cfg.hidden, POSE_DIM, activation="tanh")
        self.relu, self.tanh = ReLU(), Tanh()

    @property
    def layers(self):
        return [self.h1, self.h2, self.h3, self.h4, self.g7]

    def make_masks(self, rng, n, d2, d3, dtype, xp=np, rows=None):
        """Dropout masks for a batch of n, drawn once so the line search reuses them; rows (a
        slice, data-parallel): the masks of the whole batch are drawn and only these rows kept."""
        if rows is None:
            return {"drop1": self.drop1.make_mask(rng, (n, d2), dtype, xp),
                    "drop2": self.drop2.make_mask(rng, (n, d3), dtype, xp)}
        m1, m2 = self.drop1.make_mask(rng, (n, d2), dtype), self.drop2.make_mask(rng, (n, d3), dtype)
        return {"drop1": xp.asarray(m1[rows]), "drop2": xp.asarray(m2[rows])}

    def first_inputs(self, params, f2, f3, masks):
        """The inputs of h1 and h2: dropout of f2 (N, d2) and f3 (N, d3); masks None = evaluation.
        Returns (a, b), (dropout caches)."""
        train = masks is not None
        a, c_d1 = self.drop1.forward(params, f2, train, mask=masks["drop1"] if train else None)
        b, c_d2 = self.drop2.forward(params, f3, train, mask=masks["drop2"] if train else None)
        return (a, b), (c_d1, c_d2)

    def first_layers(self, params, f2, f3, masks):
        """Dropout and the affine maps of h1, h2: (f2, f3) -> pre-activations (z1, z2), each
        (N, hidden), cache."""
        (a, b), (c_d1, c_d2) = self.first_inputs(params, f2, f3, masks)
        z1, c_h1 = self.h1.forward(params, a)
        z2, c_h2 = self.h2.forward(params, b)
        return (z1, z2), (c_d1, c_d2, c_h1, c_h2)

    def trunk_from_pre(self, params, z1, z2):
        """ReLU(z1), ReLU(z2), concat, h3: -> h3 (N, hidden), cache."""
        a, c_r1 = self.relu.forward(params, z1)
        b, c_r2 = self.relu.forward(params, z2)
        h, sizes = concat([a, b])
        h, c_h3 = self.h3.forward(params, h)
        h3, c_r3 = self.relu.forward(params, h)
        return h3, (c_r1, c_r2, sizes, c_h3, c_r3)

    def trunk(self, params, f2, f3, masks):
        """(f2, f3) -> h3 (N, hidden), cache."""
        (z1, z2), c_first = self.first_layers(params, f2, f3, masks)
        h3, c_top = self.trunk_from_pre(params, z1, z2)
        return h3, (c_first, c_top)

    def trunk_backward(self, params, cache, g_h3, need_features=True):
        (c_d1, c_d2, c_h1, c_h2), (c_r1, c_r2, sizes, c_h3, c_r3) = cache
        grads = {}
        g, _ = self.relu.backward(params, c_r3, g_h3)
        g, gp = self.h3.backward(params, c_h3, g)
        grads.update(gp)
        ga, gb = split(g, sizes)
        ga, _ = self.relu.backward(params, c_r1, ga)
        ga, gp = self.h1.backward(params, c_h1, ga, need_gx=need_features)
        grads.update(gp)
        gb, _ = self.relu.backward(params, c_r2, gb)
        gb, gp = self.h2.backward(params, c_h2, gb, need_gx=need_features)
        grads.update(gp)
        if not need_features:
            return None, None, grads
        ga, _ = self.drop1.backward(params, c_d1, ga)
        gb, _ = self.drop2.backward(params, c_d2, gb)
        return ga, gb, grads

    def forward_from_pre(self, params, z1, z2):
        """The branch from the pre-activations of h1, h2 (first_layers) -> f_I (N, embed) (eq. 2),
        f_P (N, 51) (eq. 10), cache. The line search runs it with z1, z2 affine in the step."""
        h3, c_top = self.trunk_from_pre(params, z1, z2)
        e, c_h4 = self.h4.forward(params, h3)
        f_I, c_r4 = self.relu.forward(params, e)
        p, c_g7 = self.g7.forward(params, h3)
        f_P, c_t7 = self.tanh.forward(params, p)
        return f_I, f_P, (c_top, c_h4, c_r4, c_g7, c_t7)

    def forward(self, params, f2, f3, masks):
        """-> f_I (N, embed) (eq. 2), f_P (N, 51) (eq. 10), cache."""
        (z1, z2), c_first = self.first_layers(params, f2, f3, masks)
        f_I, f_P, (c_top, *c_heads) = self.forward_from_pre(params, z1, z2)
        return f_I, f_P, ((c_first, c_top), *c_heads)

    def backward(self, params, cache, g_I, g_P, need_features=True):
        """d/df_I, d/df_P -> (d/df2, d/df3), grads. g_P may be None (lambda = 0)."""
        c_trunk, c_h4, c_r4, c_g7, c_t7 = cache
        g, _ = self.relu.backward(params, c_r4, g_I)
        g_h3, grads = self.h4.backward(params, c_h4, g)
        if g_P is not None:
            g, _ = self.tanh.backward(params, c_t7, g_P)
            g, gp = self.g7.backward(params, c_g7, g)
            grads.update(gp)
            g_h3 = g_h3 + g
        g2, g3, gp = self.trunk_backward(params, c_trunk, g_h3, need_features)
        grads.update(gp)
        return g2, g3, grads


class PoseBranch:
    """Pose embedding f_J (eq. 3) and the Table 3 variants.

    raw: f_J(y) = y_n (51-d; the image embedding is then 51-d too); random1: ReLU(W5^T y + b5) with
    W5, b5 fixed at their random initialisation; 1layer: the same, trained; 2layer: h6(h5(y)).
    """

    def __init__(self, cfg):
        self.kind = cfg.pose_embedding
        self.layers_ = []
        if self.kind in ("random1", "1layer", "2layer"):
            self.layers_.append(Linear("h5", POSE_DIM, cfg.embed))
        if self.kind == "2layer":
            self.layers_.append(Linear("h6", cfg.embed, cfg.embed))
        self.relu = ReLU()
        self.dim = POSE_DIM if self.kind == "raw" else cfg.embed

    @property
    def layers(self):
        return self.layers_

    @property
    def frozen(self):
        """Parameter names that are not trained (the fixed random layer of Table 3)."""
        return ["h5.W", "h5.b"] if self.kind == "random1" else []

    def first_layer(self, params, y_n):
        """y_n (M, 51) -> the pre-activation of h5 (M, embed), or y_n itself for "raw"; cache."""
        if y_n.ndim != 2 or y_n.shape[1] != POSE_DIM:
            raise ValueError(f"pose embedding: expected normalised poses (M, {POSE_DIM}), got {tuple(y_n.shape)}")
        if not self.layers_:
            return y_n, None
        return self.layers_[0].forward(params, y_n)

    def forward_from_pre(self, params, z):
        """The embedding from first_layer's output -> f_J (M, dim), caches (the first layer's own
        cache left None). The line search runs it with z affine in the step."""
        if not self.layers_:
            return z, []
        h, c_relu = self.relu.forward(params, z)
        caches = [(None, c_relu)]
        for layer in self.layers_[1:]:
            h, c_lin = layer.forward(params, h)
            h, c_relu = self.relu.forward(params, h)
            caches.append((c_lin, c_relu))
        return h, caches

    def forward(self, params, y_n):
        """y_n (M, 51) -> f_J (M, dim) (eq. 3), cache."""
        z, c_first = self.first_layer(params, y_n)
        f_J, caches = self.forward_from_pre(params, z)
        if caches:
            caches[0] = (c_first, caches[0][1])
        return f_J, caches

    def backward(self, params, caches, g):
        grads = {}
        for layer, (c_lin, c_relu) in zip(reversed(self.layers_), reversed(caches)):
            g, _ = self.relu.backward(params, c_relu, g)
            g, gp = layer.backward(params, c_lin, g, need_gx=layer is not self.layers_[0])
            grads.update(gp)
        for k in self.frozen:
            grads.pop(k, None)
        return grads


class StructNet:
    """The whole score network. Parameters live in a Params container (see nn.layer)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.convs = ConvStack(cfg)
        self.pose = PoseBranch(cfg)
        self.image = ImageBranch(cfg, self.convs.d2, self.convs.d3, out_dim=self.pose.dim)

    @property
    def conv_names(self):
        return [n for layer in self.convs.layers for n in layer.param_shapes()]

    def init_params(self, rng, dtype=np.float32):
        """He/Glorot initialisation (nn.init); the auxiliary output g7 starts at zero (see
        zero_output_heads)."""
        return zero_output_heads(Params.init(self.convs.layers + self.image.layers + self.pose.layers, rng, dtype))

    def trainable(self, params, train_convs=False):
        """Names updated by SGD: everything but the frozen convolutions (Sec. 5.3) and random1's layer."""
        skip = set(self.pose.frozen) | (set() if train_convs else set(self.conv_names))
        return [k for k in params if k not in skip]

    def decayed(self, params, train_convs=False):
        """Weight matrices under the alpha term of eq. 12 (the trained ones)."""
        trainable = set(self.trainable(params, train_convs))
        return [k for k in params.weight_names if k in trainable]


class MultiTaskNet:
    """Pre-training network of reference [18] (seed 001): the same conv stack and image trunk
    (h1-h3) with two heads on h3: 3D pose regression (tanh, g7: the DconvMP-HML baseline of
    Table 1 is this head alone) and joint detection (for each joint, a softmax over the cells of a
    grid x grid partition of the image: the cell that holds the joint's projection)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.convs = ConvStack(cfg)
        self.image = ImageBranch(cfg, self.convs.d2, self.convs.d3)
        self.detect = Linear("det", cfg.hidden, N_JOINTS * cfg.detect_grid ** 2, activation="linear")

    def init_params(self, rng, dtype=np.float32):
        layers = self.convs.layers + [self.image.h1, self.image.h2, self.image.h3, self.image.g7, self.detect]
        return zero_output_heads(Params.init(layers, rng, dtype))


def zero_output_heads(params):
    """Start the prediction heads (g7, det) at zero weights: the first pose prediction is then
    the centre of the normalised pose range and the first detection is uniform. With random
    output weights the tanh starts saturated, the regression error is three times the variance
    of the targets, and the quickest way down is to erase the image features' variation (we
    measured the conv2 activity fall from 62% to 15% within 8 steps): the network collapses to
    predicting the mean pose."""
    for k in ("g7.W", "det.W"):
        if k in params:
            params[k][...] = 0
    return params
