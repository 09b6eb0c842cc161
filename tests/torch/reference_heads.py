"""PyTorch autograd reference for nsl's few-shot heads (tests/test_torch_fewshot.cpp).

usage: reference_heads.py HEAD DIR WAYS SHOTS

Reads the embeddings x.npy (B x D: ways*shots support rows, class-major,
then the queries), the head's parameters p_<name>.npy and the score
gradient dy.npy (Q x ways) from DIR; computes the scores in PyTorch
(float64) from the formulas of nsl/fewshot/heads.hpp, back-propagates dy
with autograd and writes y.npy, dx.npy and g_<name>.npy for every parameter.
"""
import pathlib
import sys

import numpy as np
import torch

head, d, ways, shots = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def load(name):
    return torch.from_numpy(np.load(d / f"{name}.npy").astype(np.float64)).requires_grad_(True)


def unit(v):
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-8)


x = load("x")
D = x.shape[1]
protos = x[: ways * shots].reshape(ways, shots, D).mean(dim=1)
queries = x[ways * shots:]
params = {}
if head == "euclidean":
    y = -((queries[:, None, :] - protos[None, :, :]) ** 2).sum(dim=2)
else:
    params["scale"] = load("p_scale")
    a, p = unit(queries), unit(protos)
    if head == "cosine":
        m = torch.eye(D, dtype=torch.float64)
    elif head == "static_ns":
        params["diagonal"] = load("p_diagonal")
        m = torch.diag(params["diagonal"])
        if (d / "p_left.npy").exists():
            params["left"], params["right"] = load("p_left"), load("p_right")
            m = m + params["left"] @ params["right"].T
    elif head == "dynamic_ns":
        for name in ("predictor.weight1", "predictor.bias1", "predictor.weight2", "predictor.bias2"):
            params[name] = load("p_" + name)
        z = p.mean(dim=0)
        hidden = torch.relu(params["predictor.weight1"] @ z + params["predictor.bias1"])
        m = torch.diag(1 + params["predictor.weight2"] @ hidden + params["predictor.bias2"])
    else:
        raise SystemExit(f"unknown head {head}")
    y = params["scale"] * (a @ m @ p.T)

dy = torch.from_numpy(np.load(d / "dy.npy").astype(np.float64))
(y * dy).sum().backward()
np.save(d / "y.npy", y.detach().numpy())
np.save(d / "dx.npy", x.grad.numpy())
for name, t in params.items():
    np.save(d / f"g_{name}.npy", t.grad.numpy())
