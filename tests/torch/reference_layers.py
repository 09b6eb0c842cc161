"""PyTorch autograd reference for nsl's layers (used by tests/test_torch_reference.cpp).

usage: reference_layers.py LAYER DIR [options]

Reads the layer's inputs as .npy files from DIR, runs the layer forward in
PyTorch (float64), back-propagates the given output gradient dy with
autograd, and writes y.npy and the gradients (dx.npy, dw.npy, db.npy) to DIR.
Written from the formulas in the library's docs, not from nsl's code.
"""
import argparse
import pathlib

import numpy as np
import torch


def load(d, name):
    return torch.from_numpy(np.load(d / f"{name}.npy").astype(np.float64)).requires_grad_(True)


def save(d, name, t):
    np.save(d / f"{name}.npy", t.detach().numpy())


def fold(w, m, structure):
    """Filters w'_o = M^T w_o, written from the definition of each structure.

    w is O x C x k x k; slots a (weight) and r (input) are the flattened k x k.
    """
    O, C, k, _ = w.shape
    K = k * k
    wf = w.reshape(O, C, K)
    if structure == "diagonal":          # m: [K], w'_{o,i,r} = m_r w_{o,i,r}
        out = wf * m
    elif structure == "channel_shared":  # M: [K, K], w'_{o,i,r} = sum_a M[a, r] w_{o,i,a}
        out = torch.einsum("oia,ar->oir", wf, m)
    elif structure == "block_diagonal":  # M: [C, K, K], one block per input channel
        out = torch.einsum("oia,iar->oir", wf, m)
    else:                                # M: [CK, CK] over the whole patch
        out = (w.reshape(O, C * K) @ m).reshape(O, C, K)
    return out.reshape(O, C, k, k)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("layer", choices=["conv2d", "linear", "static_ns"])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", type=int, default=0)
    parser.add_argument("--structure", default="diagonal",
                        choices=["diagonal", "channel_shared", "block_diagonal", "full"])
    args = parser.parse_args()
    d = args.dir
    x, w, b = load(d, "x"), load(d, "w"), load(d, "b")
    dy = torch.from_numpy(np.load(d / "dy.npy").astype(np.float64))
    if args.layer == "conv2d":
        y = torch.nn.functional.conv2d(x, w, b, stride=args.stride, padding=args.padding)
    elif args.layer == "static_ns":
        m = load(d, "m")
        folded = fold(w, m, args.structure)
        y = torch.nn.functional.conv2d(x, folded, b, stride=args.stride, padding=args.padding)
    else:
        y = torch.nn.functional.linear(x, w, b)
    y.backward(dy)
    save(d, "y", y)
    save(d, "dx", x.grad)
    save(d, "dw", w.grad)
    save(d, "db", b.grad)
    if args.layer == "static_ns":
        save(d, "dm", m.grad)


if __name__ == "__main__":
    main()
