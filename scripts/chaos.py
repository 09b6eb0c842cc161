#!/usr/bin/python3
"""How much float32 rounding a CNN-9 training step amplifies, layer by layer (docs/training.md,
"How chaotic a run is").

usage: python3 scripts/chaos.py [--variants plain dynamic_dns ...] [--seeds 1 2 3] [--steps 10]
                                [--data DIR] [--threads 1] [--predictor-gamma G]

The network is bench/compare_pytorch.py's CNN-9 (nsl's layers, widths and initialisation in
PyTorch), built once from a seed and copied to float32 and float64. On the same batch of 64
Fashion-MNIST training images (raw pixels 0..255) both copies run forward and backward; printed
per layer: the relative difference ||a32 - a64|| / ||a64|| of its output, of the gradient arriving at
its output and of its parameters' gradients, and for each max-pool the share of windows whose largest
value is a different element in the two precisions (and how close, in float64, the two elements are). Then both copies train --steps steps of SGD
(lr 0.01, momentum 0.9, weight decay 5e-4) on the same batches, and the relative difference of all
parameters is printed after each step. Everything is PyTorch on the CPU; no nsl build is needed.
"""
import argparse
import gzip
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
import compare_pytorch as cp  # noqa: E402


def load_images(directory, count, offset):
    with gzip.open(pathlib.Path(directory) / "train-images-idx3-ubyte.gz") as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(pathlib.Path(directory) / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    take = slice(offset, offset + count)
    return torch.tensor(pixels[take], dtype=torch.float64), torch.tensor(labels[take], dtype=torch.int64)


def relative(a, b):
    return (a.double() - b.double()).norm().item() / max(b.double().norm().item(), 1e-300)


def instrument(net):
    """Records every layer's output and the gradient arriving at it (ReLUs made out-of-place)."""
    outputs, grads = {}, {}
    for name, module in net.net.named_children():
        if isinstance(module, nn.ReLU):
            module.inplace = False

        def hook(module, inputs, output, name=name):
            outputs[name] = output.detach().clone()
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach().clone()))

        module.register_forward_hook(hook)
    return outputs, grads


def pool_flips(x32, x64):
    """(share of 2x2 windows (ceil mode) whose argmax differs between the two precisions, median
    relative gap in float64 between the values the two precisions chose there)."""
    top64, i64 = F.max_pool2d(x64, 2, 2, ceil_mode=True, return_indices=True)
    _, i32 = F.max_pool2d(x32, 2, 2, ceil_mode=True, return_indices=True)
    flipped = i32 != i64
    if not flipped.any():
        return 0.0, float("nan")
    chosen32 = x64.flatten(2).gather(2, i32.flatten(2)).view_as(top64)  # float64 value at float32's choice
    gap = ((top64 - chosen32).abs() / top64.abs().clamp_min(1e-300))[flipped]
    return flipped.double().mean().item(), gap.median().item()


def step_once(net, images, labels):
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(images).flatten(1), labels, label_smoothing=cp.CNN_SMOOTHING)
    loss.backward()
    return loss.item()


def analyse(variant, seed, args, images, labels):
    torch.manual_seed(seed)
    net64 = cp.Cnn9(variant, cp.IMPLS[variant][-1], torch.Generator().manual_seed(seed)).double()
    if args.predictor_gamma is not None:  # the start of the predictor's last BatchNorm's scale
        with torch.no_grad():
            for name, param in net64.named_parameters():
                if name.endswith("predictor_bn2_gamma"):
                    param.fill_(args.predictor_gamma)
    net32 = cp.Cnn9(variant, cp.IMPLS[variant][-1], torch.Generator().manual_seed(seed)).float()
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    net64.train(), net32.train()
    out64, grad64 = instrument(net64)
    out32, grad32 = instrument(net32)
    x = images[: args.batch]
    y = labels[: args.batch]
    loss64 = step_once(net64, x, y)
    loss32 = step_once(net32, x.float(), y)
    print(f"\n{variant}, seed {seed}: loss float64 {loss64:.9f}, float32 {loss32:.9f} "
          f"(relative {abs(loss32 - loss64) / abs(loss64):.1e})")
    print(f"  {'layer':22s} {'output':>9s} {'grad in':>9s} {'param grad':>10s}  notes")
    params64 = dict(net64.net.named_children())
    params32 = dict(net32.net.named_children())
    names = list(out64)
    for i, name in enumerate(names):
        p64 = [p.grad for p in params64[name].parameters() if p.grad is not None]
        p32 = [p.grad for p in params32[name].parameters() if p.grad is not None]
        pg = relative(torch.cat([g.flatten().float() for g in p32]), torch.cat([g.flatten() for g in p64])) if p64 else None
        note = ""
        if name.endswith("pool") and i > 0:
            share, gap = pool_flips(out32[names[i - 1]], out64[names[i - 1]])
            note = f"argmax differs in {100 * share:.3f}% of windows"
            if share > 0:
                note += f" (median gap between the chosen values {gap:.1e})"
        g = relative(grad32[name], grad64[name]) if name in grad64 and name in grad32 else float("nan")
        print(f"  {name:22s} {relative(out32[name], out64[name]):9.1e} {g:9.1e} "
              f"{'' if pg is None else f'{pg:10.1e}':>10s}  {note}")
    # Training on the same batches: how fast the copies part.
    opt64 = torch.optim.SGD(net64.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt32 = torch.optim.SGD(net32.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    parted = []
    for s in range(args.steps):
        xs = images[(s % args.batches) * args.batch:(s % args.batches + 1) * args.batch]
        ys = labels[(s % args.batches) * args.batch:(s % args.batches + 1) * args.batch]
        step_once(net64, xs, ys)
        opt64.step()
        step_once(net32, xs.float(), ys)
        opt32.step()
        all64 = torch.cat([p.detach().flatten() for p in net64.parameters()])
        all32 = torch.cat([p.detach().flatten() for p in net32.parameters()])
        parted.append(relative(all32, all64))
    print("  parameters after each step, relative difference: " + " ".join(f"{v:.1e}" for v in parted))
    return parted


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["plain", "dynamic_dns"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--predictor-gamma", type=float, default=None,
                        help="start the dynamic predictors' last BatchNorm scale here (default 1; 0 starts them plain)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.batches = 10
    images, labels = load_images(args.data, args.batch * args.batches, 0)
    for variant in args.variants:
        if variant not in cp.IMPLS or variant == "sphere_attention":
            sys.exit(f"chaos: unknown or unsupported variant '{variant}'")
        for seed in args.seeds:
            analyse(variant, seed, args, images, labels)


if __name__ == "__main__":
    main()
