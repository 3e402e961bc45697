"""LoRA on every block: one train step as a weight parametrization and as a module, both against the frozen step.

The parametrization (the workbench's first LoRA, `daga.methods.lora_by_parametrization`) makes every adapted block read
`W + (alpha / r) B A`; its backward forms the gradient of the whole effective weight before reducing it to A and B.
The module (`daga.methods.LoRA`, as peft does it) computes `W x + s B (A x)` and never forms a gradient of W. Both
train rank 8 on qkv and proj of every block with the same seed; the frozen baseline trains the head alone.

One train step = forward + cross-entropy + backward + AdamW over the trainable tensors, the classification head on
the CLS token, model in train mode. Configurations alternate inside every repeat, so load drifts hit all alike; the
table reports the median and the fastest step, their ratio to the frozen step, and the FLOPs of one step (torch's
FlopCounterMode: exact, whatever the load).

Run from the repository root:
    python bench/lora.py                                          (ViT-S/16, 8 x 224², a few minutes on 2 CPU cores)
    python bench/lora.py --backbone tiny --size 64 --repeats 3    (smoke test, ~15 s)
"""
import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # measure this checkout's daga, installed or not
from daga.backbone import load_backbone                            # noqa: E402
from daga.methods import Method, lora_by_parametrization, make_method   # noqa: E402
from daga.model import AdaptedViT                                  # noqa: E402


def build(kind, args, device):
    "(model, head, optimizer) of one configuration: frozen, parametrization or module, each on its own backbone."
    backbone = load_backbone(args.backbone)
    torch.manual_seed(args.seed)
    if kind == 'frozen': model = AdaptedViT(backbone, [])
    elif kind == 'parametrization':
        lora_by_parametrization(backbone, range(backbone.depth), args.rank, 2.0 * args.rank)
        model = AdaptedViT(backbone, [], method=Method(backbone, 'all'))   # the blocks run with autograd from block 0
    else:
        lora = make_method('lora', backbone, 'all', {'rank': args.rank, 'alpha': 2.0 * args.rank})
        model = AdaptedViT(backbone, [], method=lora)
    head = nn.Linear(backbone.embed_dim, 1000)
    model, head = model.to(device).train(), head.to(device).train()
    trainable = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    added = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, head, torch.optim.AdamW(trainable, lr=1e-4), added


def step(model, head, opt, images, target, sync):
    "One train step; its seconds."
    opt.zero_grad(set_to_none=True)
    sync(); t0 = time.perf_counter()
    with torch.autocast('cuda', dtype=torch.bfloat16, enabled=images.is_cuda):
        loss = F.cross_entropy(head(model(images).cls).float(), target)
    loss.backward()
    opt.step()
    sync()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--backbone', default='vits16')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--rank', type=int, default=8)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    target = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    kinds = ('frozen', 'parametrization', 'module')
    configs = {k: build(k, args, device) for k in kinds}
    flops, times = {}, {k: [] for k in kinds}
    for k, (model, head, opt, _) in configs.items():
        with FlopCounterMode(display=False) as counter: step(model, head, opt, images, target, sync)
        flops[k] = counter.get_total_flops()
        for _ in range(args.warmup): step(model, head, opt, images, target, sync)
    for _ in range(args.repeats):                                   # round robin: load drift hits every configuration
        for k, (model, head, opt, _) in configs.items(): times[k].append(step(model, head, opt, images, target, sync))
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(f'LoRA rank {args.rank} on qkv and proj of every block of {args.backbone}, {args.batch} x {args.size}², '
          f'{device.type} ({torch.get_num_threads()} threads), torch {torch.__version__}, {platform.machine()}, '
          f'{args.repeats} repeats\n')
    print('| config | params trained (head aside) | step ms (median) | x frozen (median) | x frozen (min) | GFLOP/step '
          '| FLOP x frozen |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for k in kinds:
        print(f'| {k} | {configs[k][3]:,} | {1000 * med[k]:.1f} | {med[k] / med["frozen"]:.2f} | '
              f'{low[k] / low["frozen"]:.2f} | {flops[k] / 1e9:.1f} | {flops[k] / flops["frozen"]:.2f} |')
    print(f'\nmodule / parametrization: FLOPs {flops["module"] / flops["parametrization"]:.3f}x, time (median) '
          f'{med["module"] / med["parametrization"]:.3f}x, time (min) {low["module"] / low["parametrization"]:.3f}x')
    return dict(flops=flops, median=med, min=low)


if __name__ == '__main__':
    main()
