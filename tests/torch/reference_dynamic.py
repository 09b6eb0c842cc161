"""PyTorch autograd reference for nsl's DynamicNSConv2d (used by tests/test_torch_reference.cpp).

usage: reference_dynamic.py DIR --structure diagonal|channel_shared --stride S --kernel K
                            [--sphere] [--batch-norm]

Reads x.npy, dy.npy and the parameters (weight.npy, bias.npy,
predictor_conv1_weight.npy, ..., named as nsl names them with '.' -> '_')
from DIR, builds the layer from the formulas of dynamic NSL (predictor ->
M(p) = I + G(p) -> patch transform -> one contraction with W), back-propagates
dy with autograd and writes y.npy, dx.npy and d_<parameter>.npy.
Written from the math, not from nsl's code.
"""
import argparse
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

EPS_NORM = 1e-4
EPS_BN = 1e-3


def local_input_norm(x, stride):
    """sqrt(sum of x^2 over the 3x3 x C window + eps), one value per output pixel."""
    squares = (x * x).sum(1, keepdim=True)
    window = F.conv2d(squares, torch.ones(1, 1, 3, 3, dtype=x.dtype), stride=stride, padding=1)
    return torch.sqrt(window + EPS_NORM)


def normalised_conv(x, w, stride, input_norm, filter_norm):
    z = F.conv2d(x, w, stride=stride, padding=1)
    if input_norm:
        z = z / local_input_norm(x, stride)
    if filter_norm:
        z = z / torch.sqrt((w * w).sum((1, 2, 3)) + EPS_NORM).view(1, -1, 1, 1)
    return z


def batch_norm(x, gamma, beta):
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS_BN) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--structure", choices=["diagonal", "channel_shared"], required=True)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--sphere", action="store_true")
    parser.add_argument("--batch-norm", action="store_true")
    args = parser.parse_args()
    d = args.dir

    names = ["weight", "bias", "predictor.conv1.weight", "predictor.conv2.weight"]
    if args.batch_norm:
        names += ["predictor.bn1.gamma", "predictor.bn1.beta", "predictor.bn2.gamma", "predictor.bn2.beta"]
    p = {n: torch.from_numpy(np.load(d / (n.replace(".", "_") + ".npy")).astype(np.float64)).requires_grad_(True)
         for n in names}
    x = torch.from_numpy(np.load(d / "x.npy").astype(np.float64)).requires_grad_(True)
    dy = torch.from_numpy(np.load(d / "dy.npy").astype(np.float64))

    # The similarity predictor: G = BN(conv2(ReLU(BN(conv1(x) / norms))) / norms).
    h = normalised_conv(x, p["predictor.conv1.weight"], args.stride, True, args.sphere)
    if args.batch_norm:
        h = batch_norm(h, p["predictor.bn1.gamma"], p["predictor.bn1.beta"])
    h = F.relu(h)
    g = normalised_conv(h, p["predictor.conv2.weight"], 1, args.sphere, args.sphere)
    if args.batch_norm:
        g = batch_norm(g, p["predictor.bn2.gamma"], p["predictor.bn2.beta"])

    # The dynamic convolution: v_i(p) = (I + G(p)) x_i(p), y = W v + b.
    w = p["weight"]
    N, C = x.shape[0], x.shape[1]
    O, k = w.shape[0], args.kernel
    K = k * k
    cols = F.unfold(x, k, padding=k // 2, stride=args.stride).view(N, C, K, -1)  # rows (c, r), P pixels
    P = cols.shape[-1]
    if args.structure == "diagonal":
        v = cols * (1 + g.reshape(N, 1, K, P))
    else:
        M = torch.eye(K, dtype=x.dtype).view(1, K, K, 1) + g.reshape(N, K, K, P)  # M[n, a, r, p]
        v = torch.einsum("narp,ncrp->ncap", M, cols)
    y = torch.einsum("ock,nckp->nop", w.view(O, C, K), v) + p["bias"].view(1, O, 1)
    y = y.view(N, O, g.shape[2], g.shape[3])
    y.backward(dy)

    np.save(d / "y.npy", y.detach().numpy())
    np.save(d / "dx.npy", x.grad.numpy())
    for n in names:
        np.save(d / ("d_" + n.replace(".", "_") + ".npy"), p[n].grad.numpy())


if __name__ == "__main__":
    main()
