#!/usr/bin/python3
"""nsl against PyTorch (CPU) on the workloads of nsl_bench, with the same thread count.

usage: /usr/bin/python3 bench/compare_pytorch.py [--threads N] [--quick] [--filter REGEX]
                                                 [--nsl-bench PATH] [--json-out FILE]
                                                 [--nsl-export PATH] [--ort-modules DIR] ...

1. Agreement check (before any timing): for every similarity variant among the selected layer
   cases, nsl_bench --nsl_dump writes x, dy, the layer's parameters, y, dx and every parameter
   gradient (float32); each PyTorch formulation of that layer is run on the same x, dy and
   parameters with autograd and must reproduce y, dx and every parameter gradient to within
   --tolerance (default 1e-3) of each tensor's max |value|. For every selected infer case,
   nsl_bench --nsl_dump writes x, the undeployed CNN-9's parameters and BN statistics, its model
   file and the deployed network's logits; every PyTorch candidate (evaluation mode, nsl's values
   loaded) and ONNX Runtime (nsl-export's model of that file) must give those logits to within
   --infer-tolerance (default 1e-4) of their max |value|. Any miss stops the script (exit 1).
2. Timing: every case of each side runs in its own subprocess (nsl_bench with a filter for the one
   case; this script in child mode for PyTorch), so each child's peak resident memory
   (ru_maxrss from wait4, taken by a small launcher process, see run_child) belongs to that
   case alone. Times are medians over repetitions of the
   mean time per iteration, after warm-up (nsl: one untimed iteration plus Google Benchmark's
   --benchmark_min_warmup_time; PyTorch: at least 10 untimed iterations, 2 under --quick).

The PyTorch side is written the way a strong PyTorch user would write it (bench/README.md):
static NSL folds M into the weights and runs one conv2d; dynamic DNS runs one 1x1 convolution
into K*O maps and K shifted, scaled sums (or, candidate 'unfold', scales the unfolded patches and
runs one 1x1 convolution); dynamic UNS unfolds, transforms each pixel's K x K block (einsum or a
K-step broadcast loop) and contracts with W as one 1x1 convolution. Where there are candidates,
each is checked against nsl, a selection child runs each briefly after its own warm-up (also over
the memory formats contiguous / channels_last), and the timing child then builds and times only
the fastest; the table says which one ran. A cnn9 case reuses the choice of its variant's
fwd_bwd layer case when that ran in the same invocation. The infer cases time the deployed network
(nsl::deploy) against CNN-9 in evaluation mode under torch.inference_mode(), eager or through
TorchScript (torch.jit.trace + torch.jit.optimize_for_inference, the '+jit' candidates), and, where
node, onnxruntime-node and nsl-export are found, the same network exported to ONNX and run by
bench/ort_infer.js in ONNX Runtime (CPU, the same thread count); otherwise that column is skipped
with the reason printed.
Where nsl_bench has oneDNN's cases (bench/onednn_peer.cpp), the plain layer cases also get a
oneDNN column: its convolution primitives called directly, the library under PyTorch's CPU
convolutions without the framework. The header names the CPU (/proc/cpuinfo) and the ISA path of
this nsl_bench (its context's nsl_isa_path).
PyTorch children get MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
MALLOC_TOP_PAD_=268435456; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed for both sides.
"""
import argparse
import collections
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ["plain", "static_dns", "static_uns", "dynamic_dns", "dynamic_uns", "dynamic_dns_sphere"]
INFER_VARIANTS = VARIANTS + ["sphere_attention"]  # inference covers CNN-9's attention SphereNet too
LAYER_B, LAYER_C, LAYER_H = 32, 64, 16
CNN_B, CNN_C, CNN_H, CNN_CLASSES = 128, 1, 28, 10
CNN_WIDTHS = (32, 64, 128)
ATTENTION_WIDTHS = (128, 192, 256)  # sphere_attention's stages (nsl's Cnn9Options::attention_widths)
INFER_BATCHES = (1, 64)
CNN_LR, CNN_SMOOTHING, CNN_MOMENTUM, CNN_WEIGHT_DECAY = 0.01, 0.01, 0.9, 5e-4  # as nsl_bench
GEMM_SIZES = (1024, 2048)
EPS_NORM = 1e-4          # local input norm and filter norm (NSL.md §3)
EPS_BN = 1e-3            # BatchNorm eps (NSL.md §5)
BN_MOMENTUM = 1 - 0.999  # PyTorch's momentum = 1 - decay
K = 9                    # 3x3 kernel slots

PEER_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "268435456",
}
UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# Candidate formulations per variant (the first is the one the brief describes).
IMPLS = {
    "plain": ["conv"],
    "static_dns": ["fold"],
    "static_uns": ["fold"],
    "dynamic_dns": ["shift", "unfold"],
    "dynamic_uns": ["einsum", "loop"],
    "dynamic_dns_sphere": ["shift", "unfold"],
    "sphere_attention": ["bmm"],
}
FORMATS = ["contiguous", "channels_last"]
ONEDNN_ALGOS = ["direct", "winograd"]  # nsl_bench's onednn/<algo>/... cases (bench/onednn_peer.cpp)


# ---- case names -----------------------------------------------------------------------------

def layer_case(variant, backward):
    return f"layer/{variant}/{'fwd_bwd' if backward else 'fwd'}/B{LAYER_B}_C{LAYER_C}_H{LAYER_H}"


def cnn9_case(variant):
    return f"cnn9/{variant}/train_step/B{CNN_B}_{CNN_C}x{CNN_H}x{CNN_H}"


def infer_case(variant, batch):
    return f"infer/{variant}/B{batch}_{CNN_C}x{CNN_H}x{CNN_H}"


def gemm_case(n, library="eigen"):
    return f"gemm/{library}/sgemm/N{n}"


def all_cases():
    cases = []
    for v in VARIANTS:
        cases += [layer_case(v, True), layer_case(v, False)]
    cases += [cnn9_case(v) for v in VARIANTS]
    cases += [infer_case(v, b) for v in INFER_VARIANTS for b in INFER_BATCHES]
    cases += [gemm_case(n, library) for library in ("eigen", "nsl") for n in GEMM_SIZES]
    return cases


def parse_case(name):
    """('layer', variant, backward) | ('cnn9', variant, None) | ('infer', variant, batch) | ('gemm', n, None)."""
    parts = name.split("/")
    if parts[0] == "layer":
        return "layer", parts[1], parts[2] == "fwd_bwd"
    if parts[0] == "cnn9":
        return "cnn9", parts[1], None
    if parts[0] == "infer":
        return "infer", parts[1], int(parts[2].split("_")[0][1:])
    return "gemm", int(parts[3][1:]), None


# ---- the PyTorch layers ---------------------------------------------------------------------
# Parameters are a dict keyed by nsl's names with '.' -> '_' (the .npy file stems):
# weight, similarity, predictor_conv1_weight, predictor_bn1_gamma, ... BatchNorm running
# statistics (updated as nsl updates its own) are a dict keyed by 'predictor_bn1' / 'predictor_bn2'.

def predictor_config(variant):
    """(hidden, rows, sphere, batch_norm) as in nsl's PredictorOptions::dns/uns/dns_sphere."""
    if variant == "dynamic_dns":
        return 64, K, False, True
    if variant == "dynamic_uns":
        return 128, K * K, False, False
    if variant == "dynamic_dns_sphere":
        return 64, K, True, True
    raise ValueError(variant)


def local_input_norm(x, k=3, padding=1):
    """n(p) = sqrt(sum of x^2 over the k x k x C window + eps): B x 1 x H x W (zero padding)."""
    squares = (x * x).sum(1, keepdim=True)
    if k == 1:
        return torch.sqrt(squares + EPS_NORM)
    window = F.conv2d(squares, torch.ones(1, 1, k, k, dtype=x.dtype, device=x.device), padding=padding)
    return torch.sqrt(window + EPS_NORM)


def inverse_filter_norm(w):
    return torch.rsqrt((w * w).sum((1, 2, 3)) + EPS_NORM).view(1, -1, 1, 1)


def sphere_conv(x, w, padding):
    """Cosine SphereConv (nsl's SphereConv2d, NSL.md §4): y_o(p) = w_o . x(p) / (||w_o|| n(p)), the
    cosine between filter and patch; both norms with eps inside the square root."""
    return F.conv2d(x, w, padding=padding) / local_input_norm(x, w.shape[-1], padding) * inverse_filter_norm(w)


def batch_norm(h, params, running, name, training=True):
    """Training: batch statistics (running ones updated when given); evaluation: the running ones."""
    mean, var = running.get(name, (None, None)) if running is not None else (None, None)
    return F.batch_norm(h, mean, var, params[name + "_gamma"], params[name + "_beta"], training=training,
                        momentum=BN_MOMENTUM, eps=EPS_BN)


def predictor(variant, x, p, running, training=True):
    """G = BN(conv2(ReLU(BN(conv1(x) / norms))) / norms), B x rows x H x W (NSL.md §3)."""
    _, _, sphere, bn = predictor_config(variant)
    w1, w2 = p["predictor_conv1_weight"], p["predictor_conv2_weight"]
    h = F.conv2d(x, w1, padding=1) / local_input_norm(x)
    if sphere:
        h = h * inverse_filter_norm(w1)
    if bn:
        h = batch_norm(h, p, running, "predictor_bn1", training)
    h = F.relu(h)
    g = F.conv2d(h, w2, padding=1)
    if sphere:
        g = g / local_input_norm(h) * inverse_filter_norm(w2)
    if bn:
        g = batch_norm(g, p, running, "predictor_bn2", training)
    return g


def dns_shift(x, w, g):
    """y_o(p) = sum_r (1 + g_r(p)) z_{o,r}(p + delta_r) with z = one 1x1 convolution into K*O maps."""
    B, C, H, W = x.shape
    O = w.shape[0]
    z = F.conv2d(x, w.permute(0, 2, 3, 1).reshape(O * K, C, 1, 1))  # channel o*K + r
    z = F.pad(z, (1, 1, 1, 1)).view(B, O, K, H + 2, W + 2)          # zero padding: delta_r reads 0 outside
    m = 1 + g
    y = None
    for r in range(K):
        di, dj = divmod(r, 3)
        shifted = z[:, :, r, di:di + H, dj:dj + W]
        scale = m[:, r:r + 1]
        y = shifted * scale if y is None else torch.addcmul(y, shifted, scale)
    return y


def dns_unfold(x, w, g):
    """v = (1 + g) * unfold(x), y = W v as one 1x1 convolution."""
    B, C, H, W = x.shape
    O = w.shape[0]
    cols = F.unfold(x, 3, padding=1).view(B, C, K, H * W)
    v = cols * (1 + g.reshape(B, 1, K, H * W))
    return F.conv2d(v.view(B, C * K, H, W), w.reshape(O, C * K, 1, 1))


def uns_main(x, w, g, impl):
    """v_{c,a}(p) = x_{c,a}(p) + sum_r G(p)[a][r] x_{c,r}(p), y = W v as one 1x1 convolution."""
    B, C, H, W = x.shape
    O, P = w.shape[0], H * W
    cols = F.unfold(x, 3, padding=1).view(B, C, K, P)
    G = g.reshape(B, K, K, P)  # [b, a, r, p], row a*K + r of nsl's G
    if impl == "einsum":
        v = cols + torch.einsum("barp,bcrp->bcap", G, cols)
    else:  # "loop": K broadcast multiply-adds over B x C x K x P
        v = cols
        for r in range(K):
            v = torch.addcmul(v, G[:, :, r].unsqueeze(1), cols[:, :, r].unsqueeze(2))
    return F.conv2d(v.reshape(B, C * K, H, W), w.reshape(O, C * K, 1, 1))


def similarity_conv(variant, impl, x, p, running=None, training=True):
    """One 3x3, stride 1, 'same', bias-free similarity convolution (nsl's make_similarity_conv);
    `training` selects the predictor BN's statistics (batch or running)."""
    w = p["weight"]
    if variant == "plain":
        return F.conv2d(x, w, padding=1)
    if variant == "sphere_attention":  # the attention SphereNet's convolution: a cosine SphereConv
        return sphere_conv(x, w, padding=1)
    if variant == "static_dns":  # w'[o,c,r] = w[o,c,r] m[r]
        return F.conv2d(x, w * p["similarity"].view(1, 1, 3, 3), padding=1)
    if variant == "static_uns":  # w'[o,c,r] = sum_a w[o,c,a] M[a,r]  (w'_{o,c} = M^T w_{o,c})
        O, C = w.shape[:2]
        return F.conv2d(x, (w.reshape(O * C, K) @ p["similarity"]).view(O, C, 3, 3), padding=1)
    g = predictor(variant, x, p, running, training)
    if variant == "dynamic_uns":
        return uns_main(x, w, g, impl)
    return dns_shift(x, w, g) if impl == "shift" else dns_unfold(x, w, g)


def he_normal(shape, gen, scale=1.0):
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(*shape, generator=gen) * (scale * math.sqrt(2.0 / fan_in))


def init_params(variant, cin, cout, gen):
    """Parameters with nsl's shapes and initialisation (He-normal weights, M = I, predictor at
    0.1 / 0.001 of He, BN gamma 1 and beta 0), and the BN running statistics."""
    def he(shape, scale=1.0):
        return he_normal(shape, gen, scale)

    p = {"weight": he((cout, cin, 3, 3))}
    running = {}
    if variant == "static_dns":
        p["similarity"] = torch.ones(K)
    elif variant == "static_uns":
        p["similarity"] = torch.eye(K)
    elif variant.startswith("dynamic"):
        hidden, rows, _, bn = predictor_config(variant)
        p["predictor_conv1_weight"] = he((hidden, cin, 3, 3), 0.1)
        p["predictor_conv2_weight"] = he((rows, hidden, 3, 3), 0.001)
        if bn:
            for name, width in (("predictor_bn1", hidden), ("predictor_bn2", rows)):
                p[name + "_gamma"] = torch.ones(width)
                p[name + "_beta"] = torch.zeros(width)
                running[name] = (torch.zeros(width), torch.ones(width))
    return p, running


class SimilarityConv(nn.Module):
    def __init__(self, variant, impl, cin, cout, gen):
        super().__init__()
        self.variant, self.impl = variant, impl
        p, running = init_params(variant, cin, cout, gen)
        self.p = nn.ParameterDict({k: nn.Parameter(v) for k, v in p.items()})
        for name, (mean, var) in running.items():
            self.register_buffer(name + "_mean", mean)
            self.register_buffer(name + "_var", var)
        self.running_names = list(running)

    def forward(self, x):
        running = {n: (getattr(self, n + "_mean"), getattr(self, n + "_var")) for n in self.running_names}
        return similarity_conv(self.variant, self.impl, x, self.p, running, self.training)


def global_similarity(x, wf, wg, wh, gamma):
    """nsl's GlobalSimilarity2d (NSL.md §6, include/nsl/ops/attention.hpp), per image with P = H W
    positions: cosine 1x1 projections f, g (C/8 channels) and h (C channels) of x,
    s_ij = f_i . g_j, b_ij = exp(s_ij) / sum_i' exp(s_i'j) (softmax over i), y_j = gamma sum_i b_ij h_i + x_j.
    The three projections run as one 1x1 convolution (filters pre-divided by their norms), the
    products as torch.bmm."""
    B, C, H, W = x.shape
    P, keys = H * W, wf.shape[0]
    w = torch.cat([wf, wg, wh])
    projections = F.conv2d(x, w * inverse_filter_norm(w).view(-1, 1, 1, 1)) / local_input_norm(x, 1, 0)
    f, g, h = (t.reshape(B, -1, P) for t in projections.split([keys, keys, C], dim=1))
    b = torch.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)  # [image, i, j]
    return x + gamma * torch.bmm(h, b).view(B, C, H, W)


class GlobalSimilarity(nn.Module):
    def __init__(self, channels, gen):
        super().__init__()
        keys = max(1, channels // 8)
        self.f_weight = nn.Parameter(he_normal((keys, channels, 1, 1), gen))
        self.g_weight = nn.Parameter(he_normal((keys, channels, 1, 1), gen))
        self.h_weight = nn.Parameter(he_normal((channels, channels, 1, 1), gen))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return global_similarity(x, self.f_weight, self.g_weight, self.h_weight, self.gamma)


class Cnn9(nn.Module):
    """CNN-9 (NSL.md §5) with the widths of nsl::cnn9: root conv, 3 stages of 3 similarity convs
    (each + BN + ReLU) and a 'same' 2x2 max-pool, a 'valid' score conv over the last 4x4 map;
    sphere_attention: cosine SphereConvs, stages 128/192/256 wide and a global similarity block
    after each pool. The layers are named as nsl names them, '.' -> '_' (root_conv, stage1_conv1, ...)."""

    def __init__(self, variant, impl, gen):
        super().__init__()
        attention = variant == "sphere_attention"
        widths = ATTENTION_WIDTHS if attention else CNN_WIDTHS
        layers = collections.OrderedDict()

        def add(name, module):
            layers[name.replace(".", "_")] = module

        add("root.conv", nn.Conv2d(CNN_C, widths[0], 3, padding=1, bias=False))
        add("root.bn", nn.BatchNorm2d(widths[0], eps=EPS_BN, momentum=BN_MOMENTUM))
        add("root.relu", nn.ReLU(inplace=True))
        channels, size = widths[0], CNN_H
        for stage, width in enumerate(widths, 1):
            for i in (1, 2, 3):
                add(f"stage{stage}.conv{i}", SimilarityConv(variant, impl, channels, width, gen))
                add(f"stage{stage}.bn{i}", nn.BatchNorm2d(width, eps=EPS_BN, momentum=BN_MOMENTUM))
                add(f"stage{stage}.relu{i}", nn.ReLU(inplace=True))
                channels = width
            add(f"stage{stage}.pool", nn.MaxPool2d(2, 2, ceil_mode=True))  # TF 'SAME': 7 -> 4
            if attention:
                add(f"stage{stage}.attention", GlobalSimilarity(channels, gen))
            size = (size + 1) // 2
        add("score", nn.Conv2d(channels, CNN_CLASSES, size, bias=True))
        self.net = nn.Sequential(layers)

    def forward(self, x):
        return self.net(x)


def load_nsl_tensors(net, tensors):
    """Copies nsl's parameters and buffers ({nsl name: tensor}, e.g. 'stage1.conv1.predictor.bn1.gamma',
    'root.bn.running_variance') into a Cnn9; fails on a name or shape that does not fit, or when a
    tensor of the module is left unset. BN's update counts ('updates') have no PyTorch counterpart."""
    layers = dict(net.net.named_children())
    assigned = set()
    for name, value in tensors.items():
        parts = name.split(".")
        cut = 2 if "_".join(parts[:2]) in layers else 1  # nsl layer names have one or two parts
        layer, rest = layers.get("_".join(parts[:cut])), ".".join(parts[cut:])
        if rest == "updates" or rest.endswith(".updates"):
            continue
        target = None
        if isinstance(layer, nn.Conv2d):
            target = {"weight": layer.weight, "bias": layer.bias}.get(rest)
        elif isinstance(layer, nn.BatchNorm2d):
            target = {"gamma": layer.weight, "beta": layer.bias, "running_mean": layer.running_mean,
                      "running_variance": layer.running_var}.get(rest)
        elif isinstance(layer, SimilarityConv):
            stem = rest.replace(".", "_")
            for nsl_suffix, ours in (("_running_mean", "_mean"), ("_running_variance", "_var")):
                if stem.endswith(nsl_suffix):
                    stem = stem[:-len(nsl_suffix)] + ours
                    target = getattr(layer, stem) if stem in dict(layer.named_buffers()) else None
                    break
            else:
                target = layer.p[stem] if stem in layer.p else None
        elif isinstance(layer, GlobalSimilarity):
            target = {"f.weight": layer.f_weight, "g.weight": layer.g_weight, "h.weight": layer.h_weight,
                      "gamma": layer.gamma}.get(rest)
        if target is None:
            raise ValueError(f"load_nsl_tensors: nsl's '{name}' has no place in the PyTorch CNN-9")
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(f"load_nsl_tensors: '{name}' has shape {tuple(value.shape)}, PyTorch's "
                             f"{tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value)
        assigned.add(id(target))
    missing = [n for n, t in list(net.named_parameters()) + list(net.named_buffers())
               if id(t) not in assigned and not n.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"load_nsl_tensors: nsl's dump sets no value for {', '.join(missing)}")


def cnn9_optimizer(net):
    """SGD as nsl's Sgd: momentum 0.9, L2 5e-4 on the flagged parameters (not on M, not on biases)."""
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        (no_decay if name.endswith("similarity") or name.endswith("bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": CNN_WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.SGD(groups, lr=CNN_LR, momentum=CNN_MOMENTUM, foreach=True)
    except TypeError:  # older PyTorch without foreach
        return torch.optim.SGD(groups, lr=CNN_LR, momentum=CNN_MOMENTUM)


def to_format(t, fmt):
    return t.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" and t.dim() == 4 else t


JIT = "+jit"  # an infer candidate's suffix: the network through TorchScript (see inference_network)


def inference_network(variant, impl, fmt, gen, x, tensors=None, device="cpu"):
    """CNN-9 for `variant` in evaluation mode as a callable for the infer cases: nsl's parameters
    and buffers when `tensors` ({nsl name: tensor}) is given. An impl ending in '+jit' is the
    deployment path PyTorch 1.13 documents for the CPU: torch.jit.trace on x, then
    torch.jit.optimize_for_inference (freezes the weights, folds BN into the convolutions before
    it, and converts convolutions to oneDNN's layout where that pays)."""
    net = Cnn9(variant, impl.removesuffix(JIT), gen)
    if tensors is not None:
        load_nsl_tensors(net, tensors)
    net = net.to(device).eval()
    if fmt == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    if impl.endswith(JIT):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes read as Python ints: fixed per case
            net = torch.jit.optimize_for_inference(torch.jit.trace(net, x))
    return net


# ---- the workloads (one callable per case and candidate) ------------------------------------

def make_workload(case, impl, fmt, seed=1234, device="cpu"):
    """A zero-argument callable running one iteration of `case` in PyTorch on `device` (the
    numbers are drawn on the CPU, then moved: the same workload on every device)."""
    kind, what, backward = parse_case(case)
    gen = torch.Generator().manual_seed(seed)
    if kind == "gemm":
        a, b = torch.randn(what, what, generator=gen).to(device), torch.randn(what, what, generator=gen).to(device)
        c = torch.empty(what, what, device=device)
        return lambda: torch.mm(a, b, out=c)
    if kind == "layer":
        p, running = init_params(what, LAYER_C, LAYER_C, gen)
        p = {k: to_format(v.to(device), fmt).requires_grad_(backward) for k, v in p.items()}
        running = {k: (m.to(device), v.to(device)) for k, (m, v) in running.items()}
        x = to_format(torch.randn(LAYER_B, LAYER_C, LAYER_H, LAYER_H, generator=gen).to(device), fmt)
        dy = to_format(torch.randn(LAYER_B, LAYER_C, LAYER_H, LAYER_H, generator=gen).to(device), fmt)
        if not backward:
            def forward():
                with torch.no_grad():
                    return similarity_conv(what, impl, x, p, running)
            return forward
        x.requires_grad_(True)
        inputs = [x] + list(p.values())

        def forward_backward():
            y = similarity_conv(what, impl, x, p, running)
            return torch.autograd.grad(y, inputs, dy)
        return forward_backward
    if kind == "infer":
        batch = backward  # parse_case's third field
        x = to_format((torch.rand(batch, CNN_C, CNN_H, CNN_H, generator=gen) * 255).to(device), fmt)
        net = inference_network(what, impl, fmt, gen, x, device=device)

        def infer():
            with torch.inference_mode():
                return net(x)
        return infer
    net = Cnn9(what, impl, gen).to(device)
    if fmt == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    net.train()
    opt = cnn9_optimizer(net)
    x = to_format((torch.rand(CNN_B, CNN_C, CNN_H, CNN_H, generator=gen) * 255).to(device), fmt)
    labels = torch.randint(0, CNN_CLASSES, (CNN_B,), generator=gen).to(device)
    out = net(x)
    assert out.shape == (CNN_B, CNN_CLASSES, 1, 1), out.shape

    def train_step():
        logits = net(x).flatten(1)
        loss = F.cross_entropy(logits, labels, label_smoothing=CNN_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return train_step


def timed_runs(fn, repetitions, min_time):
    """Median over repetitions of the mean time per iteration (s); each repetition runs enough
    iterations to last min_time, as Google Benchmark does."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    n = max(1, math.ceil(min_time / max(once, 1e-9)))
    samples = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples), n


def candidates_for(case):
    kind, what, _ = parse_case(case)
    if kind == "gemm":
        return [("mm", "contiguous")]
    impls = IMPLS[what] + ([i + JIT for i in IMPLS[what]] if kind == "infer" else [])
    return [(i, f) for i in impls for f in FORMATS]


def child_main(args):
    """Child mode: time one case in PyTorch (or, with --select, find its fastest formulation) and
    print one JSON line."""
    torch.set_num_threads(args.threads)
    if args.child == "idle":
        print(json.dumps({"idle": True}))
        return
    case = args.child
    if args.select:
        # One candidate at a time (built, warmed up, timed, freed): the timing child that follows
        # holds only the chosen one, so its peak memory is that formulation's own.
        trial = {}
        for impl, fmt in candidates_for(case):
            fn = make_workload(case, impl, fmt)
            for _ in range(args.warmup):
                fn()
            trial[f"{impl}/{fmt}"] = timed_runs(fn, 1, args.select_time)[0] * 1e3
            del fn
        print(json.dumps({"case": case, "chosen": min(trial, key=trial.get), "trial_ms": trial}))
        return
    fn = make_workload(case, args.impl, args.format)
    for _ in range(args.warmup):
        fn()
    seconds, iterations = timed_runs(fn, args.repetitions, args.min_time)
    print(json.dumps({"case": case, "median_ms": seconds * 1e3, "iterations": iterations, "impl": args.impl,
                      "format": args.format}))


# ---- subprocesses with their own peak memory ------------------------------------------------

# A tiny launcher between this script and each measured child. Linux starts a forked child's
# peak RSS from the parent's RSS at fork time (and a vfork/posix_spawn child from the parent's
# peak), so wait4 from this torch-importing process would report at least its own ~0.7 GiB for
# every child. The launcher (python3 -S, a few MiB) forks, execs the command and reports the
# grandchild's ru_maxrss in KiB to the file named by argv[1].
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execve(sys.argv[2], sys.argv[2:], os.environ)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_child(cmd, env, timeout):
    """Runs cmd through the launcher; returns (returncode, stdout, stderr, the command's own peak
    RSS in MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss_file:
        launcher = [sys.executable, "-S", "-c", LAUNCHER, rss_file.name]
        proc = subprocess.Popen(launcher + [str(c) for c in cmd], stdout=out, stderr=err, env=env, cwd=REPO,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            die(f"timed out after {timeout:g} s: {' '.join(str(c) for c in cmd)}")
        out.seek(0)
        err.seek(0)
        text = rss_file.read().strip()
        rss = int(text) / 1024.0 if text else float("nan")
        return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), rss


def base_env(threads):
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def nsl_env(threads):
    env = base_env(threads)
    env["NSL_BENCH_THREADS"] = str(threads)
    return env


def torch_env(threads):
    env = base_env(threads)
    env.update(PEER_MALLOC_ENV)
    return env


def die(message):
    print(f"compare_pytorch.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def run_nsl_case(args, case, tolerate_error=False):
    """Times one nsl_bench case in its own process; with tolerate_error, a case that reports an
    error (a oneDNN case skipped on this machine) gives None instead of stopping the script."""
    with tempfile.TemporaryDirectory() as tmp:
        out_file = pathlib.Path(tmp) / "out.json"
        cmd = [str(args.nsl_bench), f"--benchmark_filter=^{re.escape(case)}(/real_time)?$",
               f"--benchmark_out={out_file}", "--benchmark_out_format=json",
               f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true",
               f"--benchmark_min_time={args.min_time}", f"--benchmark_min_warmup_time={args.nsl_warmup_time}",
               f"--nsl_threads={args.threads}"]
        rc, stdout, stderr, rss = run_child(cmd, nsl_env(args.threads), args.timeout)
        if rc != 0 or not out_file.exists():
            die(f"nsl_bench failed on {case} (exit {rc}):\n{stdout}\n{stderr}")
        report = json.loads(out_file.read_text())
    runs = [b for b in report["benchmarks"] if b.get("run_name", b["name"]).split("/real_time")[0] == case]
    if not runs:
        die(f"nsl_bench reported nothing for {case}")
    if any(b.get("error_occurred") for b in runs):
        message = next(b.get("error_message") for b in runs if b.get("error_occurred"))
        if tolerate_error and "disagree" not in message:
            return None
        die(f"nsl_bench: {case}: {message}")
    median = [b for b in runs if b.get("aggregate_name") == "median"]
    row = median[0] if median else runs[0]
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[row["time_unit"]]
    return {"median_ms": row["real_time"] * scale, "gflops": row.get("GFLOP/s"), "gflop_per_iter": row.get("GFLOP/iter"),
            "images_per_s": row.get("images/s"), "latency_ms": row.get("latency_ms"), "rss_mib": rss,
            "context": report.get("context", {})}


def run_torch_case(args, case, chosen=None):
    """Times `case` in a PyTorch child; without `chosen` ((impl, format)) a selection child first
    finds the fastest candidate formulation."""
    script = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", case, "--threads", str(args.threads),
              "--warmup", str(args.torch_warmup)]
    trial = {}
    candidates = candidates_for(case)
    if chosen is None and len(candidates) == 1:
        chosen = candidates[0]
    if chosen is None:
        rc, stdout, stderr, _ = run_child(script + ["--select", "--select-time", str(args.select_time)],
                                          torch_env(args.threads), args.timeout)
        if rc != 0:
            die(f"PyTorch selection child failed on {case} (exit {rc}):\n{stdout}\n{stderr}")
        selection = json.loads(stdout.strip().splitlines()[-1])
        chosen, trial = tuple(selection["chosen"].split("/")), selection["trial_ms"]
    cmd = script + ["--repetitions", str(args.repetitions), "--min-time", str(args.min_time), "--impl", chosen[0],
                    "--format", chosen[1]]
    rc, stdout, stderr, rss = run_child(cmd, torch_env(args.threads), args.timeout)
    if rc != 0:
        die(f"PyTorch child failed on {case} (exit {rc}):\n{stdout}\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["rss_mib"] = rss
    result["trial_ms"] = trial
    return result


def run_onednn_cases(args, case, listed):
    """oneDNN's own convolutions on a plain layer case's workload (bench/onednn_peer.cpp, in
    nsl_bench where CMake found oneDNN): {algorithm: result} for each algorithm this machine runs."""
    found = {}
    for algo in ONEDNN_ALGOS:
        name = f"onednn/{algo}/{case}"
        if name in listed:
            result = run_nsl_case(args, name, tolerate_error=True)
            if result:
                found[algo] = result
    return found


# ---- the agreement check ----------------------------------------------------------------------

def load_npy(path):
    return torch.from_numpy(np.load(path).astype(np.float32))


def check_variant(args, variant, workdir):
    """Dumps the layer case from nsl_bench and compares every PyTorch candidate with it."""
    case = layer_case(variant, True)
    d = workdir / variant
    rc, stdout, stderr, _ = run_child([str(args.nsl_bench), f"--nsl_dump={d}", f"--nsl_case={case}",
                                       f"--nsl_threads={args.threads}"], nsl_env(args.threads), args.timeout)
    if rc != 0:
        die(f"nsl_bench --nsl_dump failed for {case} (exit {rc}):\n{stdout}\n{stderr}")
    names = [line.split()[1] for line in (d / "parameters.txt").read_text().splitlines() if line.strip()]
    expected = {"y": load_npy(d / "y.npy"), "dx": load_npy(d / "dx.npy")}
    expected.update({"d_" + n: load_npy(d / f"d_{n}.npy") for n in names})
    results = []
    for impl in IMPLS[variant]:
        for fmt in FORMATS:
            x = to_format(load_npy(d / "x.npy"), fmt).requires_grad_(True)
            dy = to_format(load_npy(d / "dy.npy"), fmt)
            p = {n: to_format(load_npy(d / f"{n}.npy"), fmt).requires_grad_(True) for n in names}
            y = similarity_conv(variant, impl, x, p)
            grads = torch.autograd.grad(y, [x] + [p[n] for n in names], dy)
            got = {"y": y.detach(), "dx": grads[0]}
            got.update({"d_" + n: g for n, g in zip(names, grads[1:])})
            errors = {}
            for key, want in expected.items():
                have = got[key].contiguous()
                if have.shape != want.shape:
                    die(f"agreement check: {variant} ({impl}, {fmt}): {key} has shape {tuple(have.shape)}, "
                        f"nsl's has {tuple(want.shape)}")
                scale = float(want.abs().max())
                errors[key] = float((have - want).abs().max()) / (scale if scale > 0 else 1.0)
            worst = max(errors, key=errors.get)
            results.append({"variant": variant, "impl": impl, "format": fmt, "errors": errors, "worst": worst,
                            "max_rel": errors[worst], "ok": errors[worst] <= args.tolerance})
    return results


def agreement_check(args, variants):
    torch.set_num_threads(args.threads)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="nsl_compare_"))
    try:
        rows = []
        for v in variants:
            rows += check_variant(args, v, workdir)
    finally:
        if args.keep_dumps:
            print(f"(dumps kept in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    def cells(r):
        grads = {k: e for k, e in r["errors"].items() if k.startswith("d_")}
        gw = max(grads, key=grads.get)
        return [r["variant"], r["impl"], r["format"], f"{r['errors']['y']:.2e}", f"{r['errors']['dx']:.2e}",
                f"{gw[2:]} {grads[gw]:.2e}", f"{r['max_rel']:.2e}", "ok" if r["ok"] else f"FAIL ({r['worst']})"]

    print_check(f"Agreement check: PyTorch vs nsl, layer B{LAYER_B} C{LAYER_C} H{LAYER_H}, float32",
                f"max |torch - nsl| / max |nsl| per tensor (y, dx, every parameter gradient); tolerance "
                f"{args.tolerance:g}",
                ["variant", "impl", "format", "y", "dx", "worst parameter gradient", "max rel. error", "result"],
                "llllllll", rows, cells,
                lambda r: f"{r['variant']} ({r['impl']}, {r['format']}): {r['worst']} {r['max_rel']:.3e}")
    return rows


def print_check(title, note, columns, align, rows, cells, describe_failure):
    """Prints an agreement check as a markdown table (align: one 'l' or 'r' per column) and exits
    with the failed rows described when any row is not ok."""
    print(f"## {title}\n")
    print(f"{note}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for r in rows:
        print("| " + " | ".join(cells(r)) + " |")
    print()
    failed = [r for r in rows if not r["ok"]]
    if failed:
        die(f"{title.split(':')[0].lower()} FAILED for " + ", ".join(describe_failure(r) for r in failed))


# ---- the infer cases: nsl's dump, the PyTorch check, ONNX Runtime ------------------------------

def relative_error(have, want):
    scale = float(want.abs().max())
    return float((have - want).abs().max()) / (scale if scale > 0 else 1.0)


def read_nsl_tensors(d):
    """{nsl name: tensor} of every parameter and buffer in an infer dump."""
    tensors = {}
    for manifest in ("parameters.txt", "buffers.txt"):
        for line in (d / manifest).read_text().splitlines():
            if line.strip():
                name, stem = line.split()[:2]
                tensors[name] = load_npy(d / f"{stem}.npy")
    return tensors


def dump_infer_case(args, case, workdir):
    """nsl_bench --nsl_dump for an infer case (once per invocation): x, the undeployed network's
    parameters and buffers, its model file model.nslckpt, and the deployed network's logits y."""
    d = workdir / case.replace("/", "_")
    if not (d / "y.npy").exists():
        rc, stdout, stderr, _ = run_child([str(args.nsl_bench), f"--nsl_dump={d}", f"--nsl_case={case}",
                                           f"--nsl_threads={args.threads}"], nsl_env(args.threads), args.timeout)
        if rc != 0:
            die(f"nsl_bench --nsl_dump failed for {case} (exit {rc}):\n{stdout}\n{stderr}")
    return d


class OrtColumn:
    """The ONNX Runtime column of the infer cases: nsl-export turns a dumped model file into ONNX,
    bench/ort_infer.js runs it with onnxruntime-node. `skipped` says why the column is empty (no
    node, no module, no nsl-export), or is None."""

    SCRIPT = pathlib.Path(__file__).resolve().parent / "ort_infer.js"

    def __init__(self, args):
        self.args, self.skipped, self.version = args, None, None
        self.models = {}  # case -> (path of the .onnx or None, why not)
        self.node = shutil.which(args.node or "node")
        modules = [args.ort_modules] if args.ort_modules else sorted(REPO.glob("build/*/ort"))
        modules = [m.resolve() for m in modules if (m / "node_modules/onnxruntime-node/package.json").exists()]
        exporters = [args.nsl_export] if args.nsl_export else (
            [REPO / "build/release/nsl-export", REPO / "build/release/apps/nsl-export"]
            + sorted(REPO.glob("build/*/nsl-export")) + sorted(REPO.glob("build/*/apps/nsl-export")))
        exporters = [e.resolve() for e in exporters if e.is_file() and os.access(e, os.X_OK)]
        if args.no_ort:
            self.skipped = "--no-ort"
        elif not self.node:
            self.skipped = "no `node` on PATH (--node PATH)"
        elif not modules:
            self.skipped = (f"{args.ort_modules}/node_modules/onnxruntime-node not found" if args.ort_modules else
                            "no build/*/ort/node_modules/onnxruntime-node (--ort-modules DIR)")
        elif not exporters:
            self.skipped = (f"{args.nsl_export} is not an executable" if args.nsl_export else
                            "nsl-export not found in build/*/ or build/*/apps/ (--nsl-export PATH)")
        if self.skipped:
            return
        self.modules, self.exporter = modules[0], exporters[0]
        package = json.loads((self.modules / "node_modules/onnxruntime-node/package.json").read_text())
        self.version = package.get("version", "?")
        self.require = f"require({json.dumps(str(self.modules / 'node_modules/onnxruntime-node'))})"
        probe = subprocess.run([self.node, "-e", self.require], capture_output=True, text=True, timeout=120)
        if probe.returncode != 0:
            self.skipped = f"onnxruntime-node {self.version} does not load: {probe.stderr.strip().splitlines()[-1:]}"

    def describe(self):
        if self.skipped:
            return f"ONNX Runtime column skipped: {self.skipped}"
        return (f"ONNX Runtime: onnxruntime-node {self.version} ({self.modules}) through {self.SCRIPT.name}, "
                f"models from {self.exporter}")

    def model(self, case, workdir):
        """(path of case's ONNX model or None, why not): nsl-export on the dumped model file."""
        if self.skipped:
            return None, self.skipped
        if case not in self.models:
            d = dump_infer_case(self.args, case, workdir)
            onnx = d / "model.onnx"
            done = subprocess.run([str(self.exporter), str(d / "model.nslckpt"), str(onnx)], capture_output=True,
                                  text=True, timeout=self.args.timeout)
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] if done.returncode else None
            self.models[case] = (onnx, None) if done.returncode == 0 and onnx.exists() else (
                None, f"nsl-export failed (exit {done.returncode}): {why[0] if why else ''}")
        return self.models[case]

    def command(self, onnx, *options):
        return [self.node, str(self.SCRIPT), "--model", str(onnx), "--modules", str(self.modules),
                "--threads", str(self.args.threads), *map(str, options)]

    def run(self, case, workdir):
        """The timing: {median_ms, min_ms, runs, rss_mib, ...}, or None (with the reason in models)."""
        onnx, _ = self.model(case, workdir)
        if onnx is None:
            return None
        batch = parse_case(case)[2]
        a = self.args
        rc, stdout, stderr, rss = run_child(self.command(onnx, "--batch", batch, "--warmup", a.torch_warmup, "--runs",
                                                         a.repetitions, "--min-time", a.repetitions * a.min_time),
                                            base_env(a.threads), a.timeout)
        if rc != 0:
            die(f"ort_infer.js failed on {case} (exit {rc}):\n{stdout}\n{stderr}")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["rss_mib"] = rss
        return result

    def idle_rss(self):
        """Peak RSS of node with onnxruntime-node loaded and nothing run (the runtime's baseline)."""
        if self.skipped:
            return None
        return run_child([self.node, "-e", self.require], base_env(self.args.threads), self.args.timeout)[3]


def check_infer_case(args, case, workdir, ort):
    """Rows of the infer check for one case: every PyTorch candidate (with nsl's parameters and
    buffers loaded) and ONNX Runtime (on nsl-export's model) against the deployed network's logits."""
    d = dump_infer_case(args, case, workdir)
    variant = parse_case(case)[1]
    tensors = read_nsl_tensors(d)
    x, want = load_npy(d / "x.npy"), load_npy(d / "y.npy")
    deployed = relative_error(want, load_npy(d / "y_undeployed.npy"))
    rows = []

    def add(side, formulation, have, note=""):
        if have is not None:
            if have.numel() != want.numel() or have.shape[0] != want.shape[0]:
                die(f"infer check: {case} ({side}, {formulation}): logits of shape {tuple(have.shape)}, nsl's "
                    f"{tuple(want.shape)}")
            have = have.reshape(want.shape)  # N x 10 and N x 10 x 1 x 1 hold the same logits
        error = relative_error(have, want) if have is not None else None
        rows.append({"case": case, "side": side, "formulation": formulation, "deployed_vs_undeployed": deployed,
                     "error": error, "ok": error is None or error <= args.infer_tolerance, "note": note})

    for impl, fmt in candidates_for(case):
        xf = to_format(x, fmt)
        net = inference_network(variant, impl, fmt, torch.Generator().manual_seed(1), xf, tensors)
        with torch.inference_mode():
            add("PyTorch", f"{impl}, {fmt}", net(xf))
    onnx, why = ort.model(case, workdir)
    if onnx is not None:
        rc, stdout, stderr, _ = run_child(ort.command(onnx, "--input", d / "x.npy", "--output", d / "y_ort.npy",
                                                      "--warmup", 0, "--runs", 1), base_env(args.threads), args.timeout)
        if rc != 0:
            die(f"ort_infer.js failed on {case} (exit {rc}):\n{stdout}\n{stderr}")
        add("ONNX Runtime", "nsl-export", load_npy(d / "y_ort.npy"))
    elif not ort.skipped:
        add("ONNX Runtime", "nsl-export", None, why)
    return rows


def infer_check(args, cases, workdir, ort):
    torch.set_num_threads(args.threads)
    rows = []
    for case in cases:
        rows += check_infer_case(args, case, workdir, ort)
    def cells(r):
        error = "—" if r["error"] is None else f"{r['error']:.2e}"
        result = ("skipped: " + r["note"]) if r["error"] is None else ("ok" if r["ok"] else "FAIL")
        return [r["case"], f"{r['deployed_vs_undeployed']:.1e}", r["side"], r["formulation"], error, result]

    print_check("Agreement check: the deployed CNN-9, float32",
                f"max |logits - nsl's| / max |nsl's| on nsl's inputs, parameters and BN statistics; tolerance "
                f"{args.infer_tolerance:g}. \"deploy\": nsl's deployed network against the undeployed one "
                f"(informative).{' ' + ort.describe() + '.' if ort.skipped else ''}",
                ["case", "deploy", "side", "formulation", "max rel. error", "result"], "lrllrl", rows, cells,
                lambda r: f"{r['case']} ({r['side']}, {r['formulation']}): {r['error']:.3e}")
    return rows


# ---- the report ---------------------------------------------------------------------------------

def blas_libraries():
    """The BLAS/LAPACK/oneDNN shared objects this (torch-importing) process has mapped."""
    libs = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if re.search(r"(blas|lapack|mkl|dnnl)", os.path.basename(path)):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)


def cpu_model():
    """The processor's model name from /proc/cpuinfo, and the logical CPU count."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} logical CPUs"


def nsl_isa_path(args):
    """The ISA path of this nsl_bench (its context's nsl_isa_path: SIMD target, GEMM tile, the 3x3
    convolution's algorithms), from a run that matches only the peak case (or no case)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "context.json"
        run_child([str(args.nsl_bench), "--benchmark_filter=^peak/fma/f32(/real_time)?$", "--benchmark_min_time=0.01",
                   f"--benchmark_out={out}", "--benchmark_out_format=json", f"--nsl_threads={args.threads}"],
                  nsl_env(args.threads), args.timeout)
        try:
            return json.loads(out.read_text())["context"].get("nsl_isa_path", "not reported")
        except (OSError, ValueError, KeyError):
            return "not reported"


def fmt_num(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    parser.add_argument("--quick", action="store_true", help="few iterations everywhere (smoke test)")
    parser.add_argument("--filter", default=".", help="regular expression selecting cases (re.search)")
    parser.add_argument("--nsl-bench", type=pathlib.Path, default=None,
                        help="nsl_bench executable (default: build/release/bench/nsl_bench, then build/*/bench/)")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions (default 5, quick 1)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per repetition (default 0.5, quick 0.01)")
    parser.add_argument("--torch-warmup", type=int, default=None,
                        help="untimed PyTorch iterations (default 10, quick 2)")
    parser.add_argument("--nsl-warmup-time", type=float, default=None,
                        help="nsl_bench --benchmark_min_warmup_time (default 0.5, quick 0)")
    parser.add_argument("--select-time", type=float, default=None,
                        help="seconds per candidate when choosing the fastest PyTorch formulation (default 0.3, quick 0)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="agreement tolerance (default 1e-3)")
    parser.add_argument("--infer-tolerance", type=float, default=1e-4,
                        help="agreement tolerance of the infer cases' logits (default 1e-4)")
    parser.add_argument("--nsl-export", type=pathlib.Path, default=None,
                        help="the nsl-export program for the ONNX Runtime column (default: build/*/nsl-export, "
                             "build/*/apps/nsl-export)")
    parser.add_argument("--ort-modules", type=pathlib.Path, default=None,
                        help="a folder holding node_modules/onnxruntime-node (default: build/*/ort)")
    parser.add_argument("--node", default=None, help="the node executable (default: node on PATH)")
    parser.add_argument("--no-ort", action="store_true", help="no ONNX Runtime column")
    parser.add_argument("--skip-check", action="store_true", help="skip the agreement check (not recommended)")
    parser.add_argument("--keep-dumps", action="store_true", help="keep nsl_bench's .npy dumps")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess (default 3600)")
    parser.add_argument("--json-out", type=pathlib.Path, help="also write the raw results as JSON")
    # child mode (internal)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--format", default="contiguous", help=argparse.SUPPRESS)
    parser.add_argument("--select", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    if args.child:
        args.repetitions = args.repetitions or 1
        args.min_time = args.min_time if args.min_time is not None else 0.5
        args.select_time = args.select_time if args.select_time is not None else 0.3
        child_main(args)
        return

    q = args.quick
    args.repetitions = args.repetitions or (1 if q else 5)
    args.min_time = args.min_time if args.min_time is not None else (0.01 if q else 0.5)
    args.torch_warmup = args.torch_warmup if args.torch_warmup is not None else (2 if q else 10)
    args.nsl_warmup_time = args.nsl_warmup_time if args.nsl_warmup_time is not None else (0.0 if q else 0.5)
    args.select_time = args.select_time if args.select_time is not None else (0.0 if q else 0.3)
    if args.nsl_bench is None:
        found = [REPO / "build/release/bench/nsl_bench"] + sorted(REPO.glob("build/*/bench/nsl_bench"))
        found = [f for f in found if f.exists()]
        if not found:
            die("nsl_bench not found: build it (bench/README.md) or pass --nsl-bench PATH")
        args.nsl_bench = found[0]
    args.nsl_bench = args.nsl_bench.resolve()

    cases = [c for c in all_cases() if re.search(args.filter, c)]
    if not cases:
        die(f"--filter {args.filter!r} selects no case; cases: {', '.join(all_cases())}")
    listed = run_child([str(args.nsl_bench), "--benchmark_list_tests"], nsl_env(args.threads), args.timeout)
    args.listed = {n.split("/real_time")[0] for n in listed[1].split()}
    missing = [c for c in cases if c not in args.listed]
    if listed[0] != 0 or missing:
        die(f"{args.nsl_bench} does not list {missing or 'its cases'}")

    infer_cases = [c for c in cases if parse_case(c)[0] == "infer"]
    ort = OrtColumn(args) if infer_cases else None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="nsl_compare_infer_"))  # infer dumps and ONNX models
    try:
        report(args, cases, infer_cases, ort, workdir)
    finally:
        if args.keep_dumps and infer_cases:
            print(f"(infer dumps kept in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(args, cases, infer_cases, ort, workdir):
    """Checks, times and prints the selected cases (main's work once the options are settled)."""
    q = args.quick
    print(f"# nsl vs PyTorch {torch.__version__} (CPU), {args.threads} thread(s)"
          f"{' — QUICK smoke run: numbers are not measurements' if q else ''}\n")
    print(f"- nsl_bench: {args.nsl_bench}")
    print(f"- PyTorch: oneDNN {'available' if torch.backends.mkldnn.is_available() else 'NOT available'}; "
          f"BLAS/LAPACK/oneDNN libraries mapped: {', '.join(blas_libraries()) or 'none found'}")
    print(f"- machine: {cpu_model()}; nsl's path: {nsl_isa_path(args)}")
    if ort:
        print(f"- {ort.describe()}")
    print(f"- environment: {', '.join(UNSET_ENV)} unset for both sides; OMP_NUM_THREADS={args.threads} for both; "
          f"nsl --nsl_threads={args.threads}; PyTorch torch.set_num_threads({args.threads}) and "
          + " ".join(f"{k}={v}" for k, v in PEER_MALLOC_ENV.items())
          + (f"; ONNX Runtime intra-op threads {args.threads}, inter-op 1" if ort and not ort.skipped else ""))
    print(f"- timing: median of {args.repetitions} repetition(s), each >= {args.min_time:g} s of iterations; "
          f"warm-up: nsl one untimed iteration + {args.nsl_warmup_time:g} s, PyTorch {args.torch_warmup} untimed "
          f"iteration(s) per candidate formulation"
          + (f"; ONNX Runtime {args.torch_warmup} untimed runs, then the median of single runs over >= "
             f"{args.repetitions * args.min_time:g} s" if ort and not ort.skipped else "") + "\n")

    layer_variants = []
    for c in cases:
        kind, what, _ = parse_case(c)
        if kind == "layer" and what not in layer_variants:
            layer_variants.append(what)
    check_rows, infer_check_rows = [], []
    if args.skip_check:
        print("(agreement check SKIPPED by --skip-check)\n")
    else:
        if layer_variants:
            check_rows = agreement_check(args, layer_variants)
        if infer_cases:
            infer_check_rows = infer_check(args, infer_cases, workdir, ort)

    # idle baselines of the runtimes, for reading the memory columns
    idle_nsl = run_child([str(args.nsl_bench), "--benchmark_filter=^$"], nsl_env(args.threads), args.timeout)[3]
    idle_torch = run_child([sys.executable, str(pathlib.Path(__file__).resolve()), "--child", "idle", "--threads",
                            str(args.threads)], torch_env(args.threads), args.timeout)[3]
    idle_ort = ort.idle_rss() if ort else None

    rows, chosen = [], {}
    for case in cases:
        kind, what, backward = parse_case(case)
        nsl_result = run_nsl_case(args, case)
        # cnn9 reuses the fastest formulation of the variant's layer case when that ran
        torch_result = run_torch_case(args, case, chosen.get(what) if kind == "cnn9" else None)
        if kind == "layer" and backward:
            chosen[what] = (torch_result["impl"], torch_result["format"])
        row = {"case": case, "nsl": nsl_result, "torch": torch_result}
        line = f"  ran {case}: nsl {nsl_result['median_ms']:.2f} ms, PyTorch {torch_result['median_ms']:.2f} ms"
        if kind == "layer" and what == "plain":
            row["onednn"] = run_onednn_cases(args, case, args.listed)
            line += "".join(f", oneDNN {a} {r['median_ms']:.2f} ms" for a, r in row["onednn"].items())
        if kind == "infer":
            row["ort"] = ort.run(case, workdir)
            if row["ort"]:
                line += f", ONNX Runtime {row['ort']['median_ms']:.2f} ms"
        rows.append(row)
        print(line, file=sys.stderr, flush=True)

    # Efficiency: nsl's GFLOP/s over that of the largest Eigen SGEMM of this run.
    sgemm = [r for r in rows if r["case"].startswith("gemm/eigen/") and r["nsl"]["gflops"]]
    reference = max(sgemm, key=lambda r: parse_case(r["case"])[1])["nsl"]["gflops"] if sgemm else None

    def formulation(r):
        t = r["torch"]
        impl = "torch.mm" if parse_case(r["case"])[0] == "gemm" else f"{t['impl']}, {t['format']}"
        if t.get("trial_ms"):
            impl += " (of " + ", ".join(f"{k} {v:.1f} ms" for k, v in t["trial_ms"].items()) + ")"
        return impl

    def efficiency(n):
        return f"{100 * n['gflops'] / reference:.0f}%" if reference and n["gflops"] else "-"

    training_rows = [r for r in rows if not r["case"].startswith("infer/")]
    if training_rows:
        print(f"## Timing ({args.threads} thread(s))\n")
        print("| case | nsl median ms | PyTorch median ms | ratio (PyTorch/nsl) | oneDNN median ms | ratio (oneDNN/nsl) "
              "| nsl GFLOP/s | of SGEMM | nsl peak RSS MiB | PyTorch peak RSS MiB | PyTorch formulation |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in training_rows:
            n, t = r["nsl"], r["torch"]
            ratio = t["median_ms"] / n["median_ms"]
            note = " ¹" if r["case"].startswith("cnn9/") else ""
            onednn = r.get("onednn") or {}
            best = min(onednn, key=lambda a: onednn[a]["median_ms"]) if onednn else None
            onednn_ms = f"{onednn[best]['median_ms']:.2f} ({best})" if best else "—"
            onednn_ratio = f"{onednn[best]['median_ms'] / n['median_ms']:.2f}" if best else "—"
            print(f"| {r['case']}{note} | {n['median_ms']:.2f} | {t['median_ms']:.2f} | {ratio:.2f} | {onednn_ms} | "
                  f"{onednn_ratio} | {fmt_num(n['gflops'], 1)} | {efficiency(n)} | {n['rss_mib']:.0f} | "
                  f"{t['rss_mib']:.0f} | {formulation(r)} |")
        print()
        if any(r.get("onednn") for r in training_rows):
            print("- oneDNN: its own convolution primitives on the plain layer's workload, called from C++ by "
                  "nsl_bench (onednn/<algo>/..., bench/onednn_peer.cpp), the faster of direct and Winograd (where "
                  "oneDNN offers Winograd), in the layouts it prefers, laid out before timing: the library under "
                  "PyTorch's convolutions without the framework. The other layers have no oneDNN counterpart.")
        print("- ratio > 1: nsl is faster. GFLOP/s counts the convolutions' multiply-adds (predictor's included; "
              "backward with input gradient = 2x forward), as nsl_bench reports it. \"of SGEMM\": that rate over the "
              "GFLOP/s of the largest Eigen SGEMM (gemm/eigen/sgemm) in this run.")
        print(f"- peak RSS: ru_maxrss (wait4) of the process that ran only that case, started by a small launcher so "
              "that this script's own memory is not inherited; the runtime's baseline is included: "
              f"an idle nsl_bench is {idle_nsl:.0f} MiB, an idle python3 + torch child {idle_torch:.0f} MiB.")
        if any(r["case"].startswith("cnn9/") for r in rows):
            print("- ¹ cnn9 rows are timed only: the whole network is not compared between nsl and PyTorch "
                  "(its layers are, by the layer check above). Same widths, BN (eps 1e-3, EMA 0.999), 'same' max-pool, "
                  f"label-smoothed (0.01) cross-entropy, SGD lr {CNN_LR} momentum 0.9 weight decay 5e-4; "
                  "the PyTorch network uses the formulation the layer case chose.")
        if any(r["case"].startswith("gemm/") for r in rows):
            print("- gemm rows: Eigen's product (gemm/eigen) and nsl::gemm (gemm/nsl, the GEMM of every nsl layer) in "
                  "nsl_bench against torch.mm (which calls the BLAS PyTorch is linked with).")
        print()

    infer_rows = [r for r in rows if r["case"].startswith("infer/")]
    if infer_rows:
        print(f"## Inference: the deployed CNN-9 ({args.threads} thread(s))\n")
        print("| case | nsl median ms | PyTorch median ms | ratio (PyTorch/nsl) | ONNX Runtime median ms "
              "| ratio (ORT/nsl) | nsl images/s | nsl GFLOP/s | nsl peak RSS MiB | PyTorch peak RSS MiB "
              "| ORT peak RSS MiB | PyTorch formulation |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in infer_rows:
            n, t, o = r["nsl"], r["torch"], r.get("ort")
            ort_ms = f"{o['median_ms']:.2f}" if o else "—"
            ort_ratio = f"{o['median_ms'] / n['median_ms']:.2f}" if o else "—"
            ort_rss = f"{o['rss_mib']:.0f}" if o else "—"
            ratio = t["median_ms"] / n["median_ms"]
            print(f"| {r['case']} | {n['median_ms']:.2f} | {t['median_ms']:.2f} | {ratio:.2f} "
                  f"| {ort_ms} | {ort_ratio} | {fmt_num(n['images_per_s'], 1)} | {fmt_num(n['gflops'], 1)} "
                  f"| {n['rss_mib']:.0f} | {t['rss_mib']:.0f} | {ort_rss} | {formulation(r)} |")
        print()
        print("- ratio > 1: nsl is faster. nsl: `net.infer(x, y, workspace)` of `nsl::deploy(net)` (BN folded into the "
              "convolutions), the workspace warmed; GFLOP/s counts the undeployed network's convolutions (attention "
              "blocks not counted). PyTorch: CNN-9 in evaluation mode under torch.inference_mode(); '+jit' is "
              "torch.jit.trace + torch.jit.optimize_for_inference (frozen, BN folded). B1: the time is one image's "
              "latency.")
        if ort.skipped:
            print(f"- {ort.describe()}.")
        else:
            missing = {c: why for c, (path, why) in ort.models.items() if path is None}
            print(f"- ONNX Runtime: the model file of the same network (nsl_bench --nsl_dump) through nsl-export, run "
                  f"by bench/ort_infer.js (onnxruntime-node {ort.version}, CPU, intra-op threads {args.threads}, "
                  "inter-op 1); its time is the median of single runs"
                  + (f"; no ONNX model for {', '.join(f'{c} ({w})' for c, w in missing.items())}" if missing else "")
                  + ".")
        print(f"- peak RSS as above: an idle nsl_bench is {idle_nsl:.0f} MiB, an idle python3 + torch child "
              f"{idle_torch:.0f} MiB" + (f", an idle node with onnxruntime-node {idle_ort:.0f} MiB" if idle_ort else "")
              + "; nsl's includes gathering the BN statistics before deploying.")
    if args.json_out:
        args.json_out.write_text(json.dumps({"threads": args.threads, "quick": q, "check": check_rows,
                                             "infer_check": infer_check_rows,
                                             "idle_rss_mib": {"nsl": idle_nsl, "torch": idle_torch, "ort": idle_ort},
                                             "rows": rows}, indent=1, default=str))

if __name__ == "__main__":
    main()
