"""PyTorch autograd reference for nsl's GlobalSimilarity2d (tests/test_torch_attention.cpp).

usage: reference_attention.py DIR

Reads x.npy (N x C x H x W), the projections' weights f.npy, g.npy, h.npy
(out x C x 1 x 1), gamma.npy and the output gradient dy.npy from DIR; runs
the block in PyTorch (float64) from the formulas of NSL.md sections 4 and 6
and writes y.npy, dx.npy, df.npy, dg.npy, dh.npy and dgamma.npy.
"""
import pathlib
import sys

import numpy as np
import torch

d = pathlib.Path(sys.argv[1])
EPS = 1e-4  # inside both norms' square roots, as nsl/ops/sphere.hpp documents


def load(name):
    return torch.from_numpy(np.load(d / f"{name}.npy").astype(np.float64)).requires_grad_(True)


def cosine_projection(x, w):
    """1x1 cosine SphereConv: (w_o . x_p) / (|w_o| |x_p|), both norms with EPS."""
    wm = w.reshape(w.shape[0], -1)
    z = torch.einsum("oc,ncp->nop", wm, x.flatten(2))
    wn = torch.sqrt((wm ** 2).sum(dim=1) + EPS)
    xn = torch.sqrt((x.flatten(2) ** 2).sum(dim=1) + EPS)
    return z / wn[None, :, None] / xn[:, None, :]


x, wf, wg, wh, gamma = load("x"), load("f"), load("g"), load("h"), load("gamma")
f, g, h = cosine_projection(x, wf), cosine_projection(x, wg), cosine_projection(x, wh)
s = torch.einsum("nki,nkj->nij", f, g)         # s_ij = f_i . g_j
b = torch.softmax(s, dim=1)                    # over i, for each j
o = torch.einsum("nci,nij->ncj", h, b)         # o_j = sum_i b_ij h_i
y = gamma * o.reshape(x.shape) + x
dy = torch.from_numpy(np.load(d / "dy.npy").astype(np.float64))
(y * dy).sum().backward()
for name, t in (("y", y), ("dx", x.grad), ("df", wf.grad), ("dg", wg.grad), ("dh", wh.grad), ("dgamma", gamma.grad)):
    np.save(d / f"{name}.npy", t.detach().numpy())
