"""Gradient checkpointing: what it saves and what it costs, for every method on every block; torch.compile's gain.

Each configuration is built twice on one backbone (`AdaptedViT(..., grad_checkpointing=False / True)`, same method
object, same DAGA and head weights) and measured on the same batch: the bytes autograd saves for backward in one train
step (daga.train.SavedForBackward, each storage once: the activations, without the weights), the FLOPs of the step
(torch's FlopCounterMode, exact: the recomputation shows as extra forward FLOPs), the step time (median, the two twins
alternating), and the largest relative difference of the trainable gradients between the twins (fp32).

The configurations are the frozen baseline, DAGA at [1,2,10,11] (the backward crosses blocks 2..11) and every method
on every block (`all`: the backward crosses the whole backbone), as the issue asks.

With --compile the script instead times torch.compile'd blocks (`AdaptedViT(..., compile=BACKEND)`) against eager for
the frozen baseline and DAGA [1,2,10,11]: the compile time (first step less an eager step), the step times, and the
features' difference. On the CPU, inductor's C++ build dominates (minutes, cold cache).

Run from the repository root:  python bench/checkpointing.py --threads 2     (ViT-S/16, 8 x 224², ~10 min on 2 cores)
                               python bench/checkpointing.py --backbone tiny --size 64 --repeats 2   (smoke test)
                               python bench/checkpointing.py --compile --threads 2      (inductor vs eager)
"""
import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # measure this checkout's daga, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daga.backbone import load_backbone                            # noqa: E402
from daga.methods import METHODS, make_method                      # noqa: E402
from daga.model import AdaptedViT                                  # noqa: E402
from daga.train import SavedForBackward                            # noqa: E402
from step_time import Config, _device_name, _head, _inputs, _train_step   # noqa: E402

TASK = 'classification'


def _twins(backbone, name, layers, device, seed, **variant):
    "(plain, variant) Configs of method `name` at `layers` on one copy of the backbone: same method, DAGA and head."
    torch.manual_seed(seed)
    own = backbone if name in ('frozen', 'daga') else copy.deepcopy(backbone)
    method = make_method(name, own, layers) if name not in ('frozen', 'daga') else None
    daga_layers = layers if name == 'daga' else []
    plain = AdaptedViT(own, daga_layers, method=method).to(device).train()
    other = AdaptedViT(own, daga_layers, method=method, **variant).to(device).train()
    other.daga.load_state_dict(plain.daga.state_dict())
    head = _head(TASK, own, [own.depth - 1]).to(device).train()
    blocks = 'all' if len(layers) == own.depth else '[' + ','.join(map(str, layers)) + ']'
    label = name if name == 'frozen' else f'{name} {blocks}'
    configs = []
    for model, h in ((plain, head), (other, copy.deepcopy(head))):
        cfg = Config(label, name, model, h, False)
        cfg.opt = torch.optim.AdamW(cfg.trainable, lr=1e-4, weight_decay=1e-2)
        configs.append(cfg)
    return configs


def _grads(cfg, images, target):
    "The trainable gradients of one fp32 forward and backward of `cfg` (no optimizer step), flattened."
    for p in cfg.trainable: p.grad = None
    nn.functional.cross_entropy(cfg.head(cfg.model(images, layers=cfg.head.layers)), target).backward()
    grads = torch.cat([p.grad.flatten() for p in cfg.trainable])
    for p in cfg.trainable: p.grad = None
    return grads


def _measure_first(cfg, images, target, autocast, sync):
    "FLOPs and saved bytes of one train step."
    with FlopCounterMode(display=False) as flops, SavedForBackward(nn.ModuleList([cfg.model, cfg.head])) as saved:
        _train_step(cfg, TASK, images, target, autocast, sync)
    return flops.get_total_flops(), saved.bytes


def run_checkpointing(args, backbone):
    images, target = _inputs(TASK, args.batch, args.size, args.device, args.seed)
    autocast, sync = _autocast(args.device), _sync(args.device)
    rows = []
    plan = [('frozen', [])] + [('daga', [1, 2, backbone.depth - 2, backbone.depth - 1])] + \
           [(m, list(range(backbone.depth))) for m in METHODS if m != 'frozen']
    for name, layers in plan:
        if args.methods and name not in args.methods: continue
        plain, ckpt = _twins(backbone, name, layers, args.device, args.seed, grad_checkpointing=True)
        g0, g1 = _grads(plain, images, target), _grads(ckpt, images, target)
        rel = float((g0 - g1).norm() / g0.norm().clamp_min(1e-30)) if g0.numel() else 0.0
        (f0, s0), (f1, s1) = (_measure_first(c, images, target, autocast, sync) for c in (plain, ckpt))
        times = {0: [], 1: []}
        for r in range(args.warmup + args.repeats):
            for k, c in ((0, plain), (1, ckpt)) if r % 2 == 0 else ((1, ckpt), (0, plain)):
                fwd, bwd, _ = _train_step(c, TASK, images, target, autocast, sync)
                if r >= args.warmup: times[k].append(fwd + bwd)
        t0, t1 = statistics.median(times[0]), statistics.median(times[1])
        rows.append((plain.label, plain.added_params, s0, s1, f0, f1, t0, t1, min(times[0]), min(times[1]), rel))
        print(f'  {plain.label}: saved {s0 / 2**20:.1f} -> {s1 / 2**20:.1f} MB, '
              f'step {1e3 * t0:.0f} -> {1e3 * t1:.0f} ms',
              file=sys.stderr, flush=True)
        del plain, ckpt
    print('\n| config | params trained (head aside) | saved MB off | saved MB on | saved x | GFLOP/step off '
          '| GFLOP/step on '
          '| FLOP x | step ms off (median) | step ms on (median) | time x (median / min) | gradient rel. diff |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for label, n, s0, s1, f0, f1, t0, t1, m0, m1, rel in rows:
        print(f'| {label} | {n:,} | {s0 / 2**20:.1f} | {s1 / 2**20:.1f} | **{s1 / s0:.2f}** | {f0 / 1e9:.1f} '
              f'| {f1 / 1e9:.1f} '
              f'| {f1 / f0:.2f} | {1e3 * t0:.1f} | {1e3 * t1:.1f} | {t1 / t0:.2f} / {m1 / m0:.2f} | {rel:.1e} |')
    print('\nsaved = what autograd keeps for backward after the forward (SavedForBackward); with checkpointing, a '
          'block\'s activations exist again only while its backward runs (one block at a time). FLOP x is exact: the '
          'recomputed forwards of the checkpointed blocks.')


def run_compile(args, backbone):
    images, target = _inputs(TASK, args.batch, args.size, args.device, args.seed)
    autocast, sync = _autocast(args.device), _sync(args.device)
    print(f'\n## torch.compile ({args.backend}) against eager\n')
    print('| config | compile s (first step less an eager step) | step ms eager (median) | step ms compiled (median) '
          '| speed-up | features max rel. diff |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, layers in (('frozen', []), ('daga', [1, 2, backbone.depth - 2, backbone.depth - 1])):
        torch._dynamo.reset()
        eager, compiled = _twins(backbone, name, layers, args.device, args.seed, compile=args.backend)
        _train_step(eager, TASK, images, target, autocast, sync)
        eager_once, first = (_seconds(lambda c=c: _train_step(c, TASK, images, target, autocast, sync))
                             for c in (eager, compiled))
        times = {0: [], 1: []}
        for r in range(args.warmup + args.repeats):
            for k, c in ((0, eager), (1, compiled)) if r % 2 == 0 else ((1, compiled), (0, eager)):
                fwd, bwd, _ = _train_step(c, TASK, images, target, autocast, sync)
                if r >= args.warmup: times[k].append(fwd + bwd)
        compiled.model.daga.load_state_dict(eager.model.daga.state_dict())
        eager.model.eval(); compiled.model.eval()
        with torch.no_grad():
            a, b = eager.model(images), compiled.model(images)
        rel = float((a.patches - b.patches).abs().max() / a.patches.abs().max())
        t0, t1 = statistics.median(times[0]), statistics.median(times[1])
        print(f'| {eager.label} | {first - eager_once:.1f} | {1e3 * t0:.1f} | {1e3 * t1:.1f} | {t0 / t1:.2f}x '
              f'| {rel:.1e} |', flush=True)


def _seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _autocast(device):
    return (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if device.type == 'cuda' else contextlib.nullcontext


def _sync(device): return torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--backbone', default='vits16')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--repeats', type=int, default=5, help='timed steps per twin')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--device', default='auto')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--methods', default=None, help="only these configurations, e.g. 'frozen,daga,lora'")
    p.add_argument('--compile', action='store_true', help='time torch.compile instead of checkpointing')
    p.add_argument('--backend', default='inductor', help='the torch.compile backend for --compile')
    args = p.parse_args(argv)
    if args.device == 'auto': args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    args.device = torch.device(args.device)
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda, but no CUDA GPU is visible: use --device cpu.')
    if args.methods:
        args.methods = [m.strip() for m in args.methods.split(',') if m.strip()]
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown: p.error(f'--methods: {unknown} unknown; use some of {", ".join(METHODS)}.')
    for name in ('size', 'batch', 'repeats'):
        if getattr(args, name) < 1: p.error(f'--{name} must be >= 1')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads: torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone).to(args.device)
    print('# Gradient checkpointing' + (' and torch.compile' if args.compile else ''))
    print(f'torch {torch.__version__} | device {_device_name(args.device)} | threads {torch.get_num_threads()} | '
          f"{'bf16 autocast' if args.device.type == 'cuda' else 'fp32'} | backbone {args.backbone} (random init) | "
          f'{args.batch} x {args.size}² | classification head | repeats {args.repeats}, warm-up {args.warmup}')
    if hasattr(os, 'getloadavg'): print(f'load average at start: {os.getloadavg()[0]:.2f}')
    (run_compile if args.compile else run_checkpointing)(args, backbone)
    if hasattr(os, 'getloadavg'): print(f'\nload average at end: {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
