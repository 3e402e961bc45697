"""Train-step time of DAGA against the frozen baseline and the naive two-pass method (the public reference).

One train step = forward + loss + backward + AdamW step over the trainable parameters (DAGA + head), model in train
mode. Configurations alternate round-robin inside every repeat, so drift in machine load hits all of them alike; the
table reports the median (and the fastest) step per configuration and its ratio to the frozen baseline, plus the
FLOPs of one step (counted by torch's FlopCounterMode), which tell what a ratio would be on a machine without noise.

The two-pass method is what the reference implementation pays: one extra full frozen forward of the backbone under
no_grad (only to read the guidance attention), then the adapted forward. It is emulated with this repository's own
AdaptedViT, never a second DAGA: the extra frozen pass is `backbone(images)` under no_grad, and the adapted model
reads its guidance at its first DAGA layer (`guidance_layer=min(daga_layers)`), so it runs no frozen stream of its
own -- the guidance then comes from the extra pass, exactly as in the reference.

With --methods, the configurations are instead the methods DAGA is compared with (daga.methods), each on the
last block (or --method-layers) of its own copy of the backbone: the train-step time and FLOPs of frozen, daga, lora,
adaptformer, vpt, bitfit and full against the frozen baseline, and the activation memory a step keeps for backward.

Detection times DETR's real profile (6 encoder and 6 decoder layers, 100 queries, 4 evenly spaced blocks) on two
layouts of the same batch of COCO's two commonest shapes (640 x 480 and 640 x 427): every image on a square canvas
(the old pipeline, no mask) and the batch cut to its own extent with the padding mask (the pipeline now), and prints
the tokens per image at COCO's aspect ratios. `--gpu-hours` instead counts, on the meta device (no compute), the FLOPs
of one training image and one evaluation image per backbone and turns them into GPU-hours for the real COCO run.

Run from the repository root:  python bench/step_time.py            (all tasks, ViT-S/16, ~10 min on 2 CPU cores)
                               python bench/step_time.py --backbone tiny --size 64 --repeats 3   (smoke test)
                               python bench/step_time.py --task classification --methods all   (every method)
                               python bench/step_time.py --task detection --gpu-hours         (FLOPs -> GPU-hours)
"""
import argparse
import contextlib
import copy
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # measure this checkout's daga, installed or not
from daga.backbone import load_backbone                            # noqa: E402
from daga.heads import LinearClassifier, LinearDepthHead, LinearSegHead, default_out_indices   # noqa: E402
from daga.methods import METHODS, make_method                      # noqa: E402
from daga.model import AdaptedViT, parse_layers                    # noqa: E402
from daga.train import SavedForBackward                            # noqa: E402
from daga.tasks.depth import sig_loss                              # noqa: E402
from daga.coco import batch_extent                                   # noqa: E402
from daga.detr import DETRHead, HungarianMatcher, SetCriterion      # noqa: E402

IGNORE_INDEX = 255
NUM_CLASSES = {'classification': 1000, 'segmentation': 150, 'detection': 80}
TASK_DEFAULTS = {'classification': dict(size=224, batch=8), 'segmentation': dict(size=512, batch=2),
                 'depth': dict(size=(416, 544), batch=4),           # depth: DINOv3's NYU crop, 4 per GPU
                 'detection': dict(size=640, batch=2)}             # detection: the longer side, the real profile's
OBJECTS_PER_IMAGE = 7                                             # detection targets: COCO's mean is 7.3
# COCO's shapes at the longer side 640 (train2017's commonest: 640 x 480 and 640 x 427, then their portraits and 1:1)
COCO_SHAPES = [('4:3', 480, 640), ('3:2', 427, 640), ('3:4', 640, 480), ('2:3', 640, 427), ('1:1', 640, 640)]
DETECTION_BATCH = [(480, 640), (427, 640)]                        # the timed batch, at --size 640: COCO's two commonest
COCO_TRAIN_IMAGES, COCO_VAL_IMAGES = 118_287, 5_000
# (task, role of the measured config, limit on its time / baseline, the figure for the two-pass twin)
TARGETS = [('classification', 'daga_last', 1.10, 2.0), ('classification', 'daga_multi', 2.0, 3.1),
           ('segmentation', 'daga_last', 1.10, None), ('depth', 'daga_last', 1.10, None), ('detection', 'daga_last', 1.10, None)]


@dataclass
class Config:
    "One measured configuration: its model, head, optimizer and the times of its steps."
    label: str
    role: str                       # baseline | daga_last | daga_multi | two_last | two_multi
    model: AdaptedViT
    head: nn.Module
    two_pass: bool
    opt: torch.optim.Optimizer = None
    step: list = field(default_factory=list)        # seconds per timed step
    forward: list = field(default_factory=list)     # seconds: forward + loss
    backward: list = field(default_factory=list)    # seconds: backward + optimizer step
    match: list = field(default_factory=list)       # seconds: DETR's Hungarian matching, inside forward + loss (detection)
    inputs: tuple = None                            # detection: (images, targets, padding mask or None) of its layout
    layout: str = ''                                # detection: 'own extent' or 'square canvas'
    flops: int = 0
    saved_bytes: int = 0                            # what autograd keeps for backward in one step (activations)

    @property
    def added_params(self) -> int: return sum(p.numel() for p in self.model.parameters() if p.requires_grad)
    @property
    def trainable(self) -> list:
        return [p for p in list(self.model.parameters()) + list(self.head.parameters()) if p.requires_grad]


def _fmt_layers(layers) -> str: return '[' + ','.join(str(l) for l in layers) + ']'


def _method_configs(backbone, methods, layers):
    "(label, role, method, layers) of each method compared: daga's role is daga_last (its target applies), frozen's baseline."
    for name in methods:
        if name == 'frozen': yield 'frozen', 'baseline', 'frozen', []
        else: yield f'{name}{_fmt_layers(layers)}', 'daga_last' if name == 'daga' and layers == [backbone.depth - 1] else name, name, layers


def _configs(task, backbone):
    "(label, role, daga_layers, two_pass) for `task`, block indices relative to the backbone's depth."
    last = backbone.depth - 1
    if task == 'classification':
        multi = parse_layers([1, 2, last - 1, last], backbone.depth)
        plan = [('daga_last', [last], False), ('daga_multi', multi, False),
                ('two_last', [last], True), ('two_multi', multi, True)]
    elif task == 'detection':                                          # the pair (per layout: see _build)
        plan = [('daga_last', [last], False)]
    else:
        plan = [('daga_last', [last], False), ('daga_multi', default_out_indices(backbone.depth), False),
                ('two_last', [last], True)]
    yield 'baseline', 'baseline', [], False
    for role, layers, two_pass in plan:
        yield f"{'two-pass' if two_pass else 'daga'}{_fmt_layers(layers)}", role, layers, two_pass


def _head(task, backbone, out_indices):
    if task == 'classification': return LinearClassifier(backbone.embed_dim, NUM_CLASSES[task])
    if task == 'depth': return LinearDepthHead(backbone.embed_dim, [backbone.depth - 1])   # DINOv3's linear protocol: the last block
    if task == 'detection':                           # the real profile: DETR's 6 + 6 layers, 100 queries, 4 blocks
        return DETRHead(backbone.embed_dim, NUM_CLASSES[task], default_out_indices(backbone.depth))
    return LinearSegHead(backbone.embed_dim, NUM_CLASSES[task], out_indices)


def _build_methods(task, backbone, out_indices, device, seed, methods, layers):
    "One configuration per method; a method that changes the backbone (all but frozen and daga) gets its own copy of it."
    configs = []
    for label, role, name, blocks in _method_configs(backbone, methods, layers):
        torch.manual_seed(seed)
        own = backbone if name in ('frozen', 'daga') else copy.deepcopy(backbone)
        model = AdaptedViT(own, blocks if name == 'daga' else [], method=make_method(name, own, blocks) if name not in ('frozen', 'daga') else None)
        cfg = Config(label, role, model.to(device).train(), _head(task, backbone, out_indices).to(device).train(), False)
        cfg.opt = torch.optim.AdamW(cfg.trainable, lr=1e-4, weight_decay=1e-2)
        configs.append(cfg)
    return configs


def _build(task, backbone, out_indices, device, seed):
    "Every configuration of `task`, sharing the one frozen backbone; DAGA and heads start from the same seed."
    configs = []
    for label, role, layers, two_pass in _configs(task, backbone):
        torch.manual_seed(seed)
        # two-pass: guidance read at the first DAGA layer's input, so the model runs no frozen stream of its own
        model = AdaptedViT(backbone, daga_layers=layers, guidance_layer=min(layers) if two_pass else None)
        cfg = Config(label, role, model.to(device).train(), _head(task, backbone, out_indices).to(device).train(), two_pass)
        cfg.opt = torch.optim.AdamW(cfg.trainable, lr=1e-4, weight_decay=1e-2)
        configs.append(cfg)
    return configs


def _detection_configs(backbone, args, device):
    "Baseline and DAGA [last] on two layouts of one batch of COCO shapes: its own extent (masked), square canvases."
    size, batch = args.size or TASK_DEFAULTS['detection']['size'], args.batch or TASK_DEFAULTS['detection']['batch']
    _, targets = _inputs('detection', batch, size, device, args.seed)
    shapes = [(round(h * size / 640), round(w * size / 640)) for h, w in DETECTION_BATCH] * batch
    canvas = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(args.seed)).to(device)
    own, mask = batch_extent(canvas, torch.tensor(shapes[:batch]))
    configs = []
    for layout, images, padding, prefix in (('own extent', own, mask, ''), ('square canvas', canvas, None, 'square_')):
        for cfg in _build('detection', backbone, args.out_indices, device, args.seed):
            cfg.label, cfg.role, cfg.layout = f'{cfg.label} ({layout})', prefix + cfg.role, layout
            cfg.inputs = (images, targets, padding)
            configs.append(cfg)
    return configs


def _inputs(task, batch, size, device, seed):
    "Fixed random images (B, 3, H, W) and targets: class ids (B,), masks (B, H, W) with ~10% ignored pixels, or depths with ~10% invalid."
    g = torch.Generator().manual_seed(seed)
    h, w = size if isinstance(size, tuple) else (size, size)
    images = torch.randn(batch, 3, h, w, generator=g)
    if task == 'classification':
        target = torch.randint(0, NUM_CLASSES[task], (batch,), generator=g)
    elif task == 'depth':
        target = 0.5 + 9 * torch.rand(batch, h, w, generator=g)                        # metres
        target[torch.rand(batch, h, w, generator=g) < 0.1] = 0.0                        # invalid
    elif task == 'detection':                                           # [(cxcywh boxes in [0, 1], labels)] per image
        return images.to(device), [(torch.cat([0.2 + 0.6 * torch.rand(OBJECTS_PER_IMAGE, 2, generator=g),
                                               0.05 + 0.3 * torch.rand(OBJECTS_PER_IMAGE, 2, generator=g)], 1).to(device),
                                    torch.randint(0, NUM_CLASSES[task], (OBJECTS_PER_IMAGE,), generator=g).to(device))
                                   for _ in range(batch)]
    else:
        target = torch.randint(0, NUM_CLASSES[task], (batch, h, w), generator=g)
        target[torch.rand(batch, h, w, generator=g) < 0.1] = IGNORE_INDEX
    return images.to(device), target.to(device)


class TimedMatcher(HungarianMatcher):
    "DETR's matcher that adds the time of each call to `seconds` (after waiting for the device, so earlier work is not billed)."
    seconds, sync = 0.0, staticmethod(lambda: None)

    def __call__(self, *args):
        self.sync(); t0 = time.perf_counter()
        matches = super().__call__(*args)
        self.seconds += time.perf_counter() - t0
        return matches

MATCHER = TimedMatcher()
CRITERION = SetCriterion(MATCHER)                                   # DETR's loss: CE + 5 L1 + 2 GIoU on each of the 6 layers


def _train_step(cfg, task, images, target, autocast, sync):
    "One timed train step; returns (forward + loss, backward + optimizer, matching within forward + loss) seconds."
    images, target, mask = cfg.inputs if cfg.inputs is not None else (images, target, None)   # detection: its layout's
    cfg.opt.zero_grad(set_to_none=True)
    MATCHER.seconds, MATCHER.sync = 0.0, sync
    sync(); t0 = time.perf_counter()
    with autocast():
        if cfg.two_pass:
            with torch.no_grad(): cfg.model.backbone(images)   # the reference's extra frozen pass, for the guidance
        feats = cfg.model(images, layers=cfg.head.layers, mask=mask)
        if task in ('classification', 'detection'): logits = cfg.head(feats)        # (B, C) or DETR's outputs
        else: logits = cfg.head(feats, size=tuple(images.shape[-2:]))                # (B, C, S, S) or depth (B, H, W)
        if task == 'depth': loss = sig_loss(logits.float(), target, target > 0)
        elif task == 'detection': loss = CRITERION(logits, target)['loss']
        else: loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
    sync(); t1 = time.perf_counter()
    loss.backward()
    cfg.opt.step()
    sync(); t2 = time.perf_counter()
    return t1 - t0, t2 - t1, MATCHER.seconds


def run_task(task, args, backbone, device):
    "Build, count FLOPs, warm up and time every configuration of `task`; returns the configs with their times."
    size, batch = args.size or TASK_DEFAULTS[task]['size'], args.batch or TASK_DEFAULTS[task]['batch']
    if args.methods:
        configs = _build_methods(task, backbone, args.out_indices, device, args.seed, args.methods, args.method_layers)
    elif task == 'detection': configs = _detection_configs(backbone, args, device)
    else: configs = _build(task, backbone, args.out_indices, device, args.seed)
    images, target = _inputs(task, batch, size, device, args.seed)
    autocast = ((lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if device.type == 'cuda'
                else contextlib.nullcontext)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    print(f"\n## {task}: {batch} x 3 x {' x '.join(map(str, size if isinstance(size, tuple) else (size, size)))}"
          + (f', head out_indices {_fmt_layers(args.out_indices)}' if task == 'segmentation' else '')
          + (f' (square canvases; own extent {" x ".join(map(str, configs[0].inputs[0].shape[-2:]))}), DETR on '
             f'{_fmt_layers(configs[0].head.layers)}' if configs[0].inputs is not None else ''), flush=True)
    for cfg in configs:                               # one untimed step each, counting FLOPs and the bytes kept for backward
        with FlopCounterMode(display=False) as counter, SavedForBackward(nn.ModuleList([cfg.model, cfg.head])) as saved:
            _train_step(cfg, task, images, target, autocast, sync)
        cfg.flops, cfg.saved_bytes = counter.get_total_flops(), saved.bytes
    n = len(configs)
    for r in range(args.warmup + args.repeats):
        t_round = time.perf_counter()
        for cfg in configs[r % n:] + configs[:r % n]:  # round-robin, a different config first each repeat
            fwd, bwd, match = _train_step(cfg, task, images, target, autocast, sync)
            if r >= args.warmup:
                cfg.forward.append(fwd); cfg.backward.append(bwd); cfg.step.append(fwd + bwd); cfg.match.append(match)
        kind = 'warm-up' if r < args.warmup else 'repeat'
        idx = r + 1 if r < args.warmup else r - args.warmup + 1
        print(f'  {kind} {idx}/{args.warmup if r < args.warmup else args.repeats}: '
              f'{time.perf_counter() - t_round:.1f} s', file=sys.stderr, flush=True)
    return configs


def _ms(xs): return 1e3 * statistics.median(xs)


def print_table(configs):
    "The markdown table of one task: median and fastest step in ms, ratios of time and FLOPs to the baseline."
    base = configs[0]
    print('\n| config | params trained (head aside) | step ms (median) | step ms (min) | forward ms | backward+opt ms '
          '| x baseline (median) | x baseline (min) | GFLOP/step | FLOP x baseline | activations MB |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for c in configs:
        print(f'| {c.label} | {c.added_params:,} | {_ms(c.step):.1f} | {1e3 * min(c.step):.1f} | {_ms(c.forward):.1f} '
              f'| {_ms(c.backward):.1f} | {_ms(c.step) / _ms(base.step):.2f} | {min(c.step) / min(base.step):.2f} '
              f'| {c.flops / 1e9:.1f} | {c.flops / base.flops:.2f} | {c.saved_bytes / 2**20:.1f} |')
    print('\nforward = forward + loss, backward+opt = backward + AdamW step (medians). Other processes only ever add '
          'time: when the median and min ratios disagree, the machine was busy; the FLOP ratio is noise-free.')
    if any(c.match and any(c.match) for c in configs):
        print('\nHungarian matching (the costs of the 6 decoder layers, their transfer to the CPU, scipy\'s assignment), '
              'inside forward + loss: ' + '; '.join(f'{c.label} {_ms(c.match):.1f} ms = {_ms(c.match) / _ms(c.step):.1%} of the step'
                                                    for c in configs) + '.')


def print_detection_layouts(configs, size):
    "Tokens per image at COCO's shapes; per layout, step time and FLOPs of the baseline and DAGA and their ratios."
    side = size // 16
    print(f'\nTokens per image at the longer side {size} (COCO\'s shapes): square canvas {side * side} for every '
          'image.\n')
    print('| shape (w:h) | image | tokens, own extent | of the square canvas |\n|---|---|---:|---:|')
    for name, h, w in COCO_SHAPES:
        h, w = round(h * size / 640), round(w * size / 640)
        tokens = math.ceil(h / 16) * math.ceil(w / 16)
        print(f'| {name} | {w} x {h} | {tokens} | {tokens / side ** 2:.0%} |')
    by = {(c.layout, c.role.replace('square_', '')): c for c in configs}
    square = by[('square canvas', 'baseline')]
    print('\n| layout | tokens / image | baseline ms (median) | DAGA ms (median) | DAGA / baseline (median / min) '
          '| DAGA / baseline (FLOPs) | baseline GFLOP | baseline FLOPs vs square |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    for layout in ('own extent', 'square canvas'):
        base, daga = by[(layout, 'baseline')], by[(layout, 'daga_last')]
        tokens = base.inputs[0].shape[-2] * base.inputs[0].shape[-1] // 256
        ratio = f'{_ms(daga.step) / _ms(base.step):.2f} / {min(daga.step) / min(base.step):.2f}'
        print(f'| {layout} | {tokens} | {_ms(base.step):.1f} | {_ms(daga.step):.1f} | {ratio} | '
              f'{daga.flops / base.flops:.3f} | {base.flops / 1e9:.1f} | {base.flops / square.flops:.2f} |')


def gpu_hours(args, backbones=('vits16', 'vitb16', 'vitl16', 'vith16plus'), shape=(480, 640)) -> list:
    "Per backbone: FLOPs of a training and an evaluation image (on the meta device), GPU-hours of the real COCO run."
    epochs, evaluations, rows = 50, 10, []                 # the real profile: 50 epochs, val2017 every 5 epochs
    x = torch.empty(1, 3, *shape, device='meta')
    print(f'\n## GPU-hours of the real COCO run: {epochs} epochs of train2017 ({COCO_TRAIN_IMAGES:,} images) and '
          f'{evaluations} evaluations of val2017, every image at {shape[1]} x {shape[0]}, at {args.tflops:g} TFLOP/s\n')
    print('| backbone | variant | GFLOP / training image | GFLOP / evaluation image | GPU-hours |')
    print('|---|---|---:|---:|---:|')
    for name in backbones:
        with torch.device('meta'): backbone = load_backbone(name)
        for variant, layers in (('baseline', []), ('DAGA [last]', [backbone.depth - 1])):
            with torch.device('meta'):
                model = AdaptedViT(backbone, layers)
                head = DETRHead(backbone.embed_dim, NUM_CLASSES['detection'], default_out_indices(backbone.depth))
            with FlopCounterMode(display=False) as train:
                out = head(model(x, layers=head.layers))
                layers = out['aux_outputs'] + [out]        # the loss's own FLOPs (matching) are negligible
                sum(o['pred_logits'].logsumexp(-1).mean() + o['pred_boxes'].mean() for o in layers).backward()
            with FlopCounterMode(display=False) as evaluate: head(model.eval()(x, layers=head.layers))   # forward only
            per_train, per_eval = train.get_total_flops(), evaluate.get_total_flops()
            total = per_train * COCO_TRAIN_IMAGES * epochs + per_eval * COCO_VAL_IMAGES * evaluations
            hours = total / (args.tflops * 1e12) / 3600
            rows.append((name, variant, per_train, per_eval, hours))
            print(f'| {name} | {variant} | {per_train / 1e9:.0f} | {per_eval / 1e9:.0f} | {hours:.1f} |')
    print('\nA comparison trains both variants: add their hours. Training draws the longer side from 320-640 pixels, '
          'so an average training image has about 0.6x the pixels counted here: the hours are an upper bound.')
    return rows


def check_targets(results) -> bool:
    "Print PASS/MISS for the issue's targets among the tasks run; True when all of them pass."
    lines, ok = [], True
    for task, role, limit, two_pass_figure in TARGETS:
        if task not in results: continue
        by_role = {c.role: c for c in results[task]}
        if role not in by_role or 'baseline' not in by_role: continue
        base, cfg = by_role['baseline'], by_role[role]
        ratio = _ms(cfg.step) / _ms(base.step)
        passed = ratio <= limit
        ok &= passed
        line = (f'- {task}: {cfg.label} / baseline = {ratio:.2f} (target <= {limit:.2f}; min {min(cfg.step) / min(base.step):.2f}, '
                f'FLOPs {cfg.flops / base.flops:.2f})  **{"PASS" if passed else "MISS"}**')
        twin = by_role.get(role.replace('daga', 'two'))
        if twin is not None:
            line += (f'; {twin.label} = {_ms(twin.step) / _ms(base.step):.2f}x'
                     + (f' (issue: ~{two_pass_figure}x)' if two_pass_figure else '')
                     + f'; {cfg.label} / {twin.label} = {_ms(cfg.step) / _ms(twin.step):.2f}')
        lines.append(line)
    print('\n## Targets\n' + '\n'.join(lines))
    return ok


def _device_name(device) -> str:
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    return f'cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--task', choices=['classification', 'segmentation', 'depth', 'detection', 'all'], default='all')
    p.add_argument('--backbone', default='vits16', help="daga.backbone.load_backbone name ('tiny' for a smoke test)")
    p.add_argument('--size', type=int, default=None,
                   help='image side (default: 224 classification, 512 segmentation and detection, 416 x 544 depth)')
    p.add_argument('--batch', type=int, default=None,
                   help='batch size (default: 8 classification, 2 segmentation and detection, 4 depth)')
    p.add_argument('--out-indices', default=None,
                   help="segmentation head blocks, e.g. '2,5,8,11' (default: 4 evenly spaced, ending at the last)")
    p.add_argument('--repeats', type=int, default=7, help='timed steps per config')
    p.add_argument('--warmup', type=int, default=2, help='untimed round-robin rounds before timing')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    p.add_argument('--device', default='auto', help="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--methods', default=None,
                   help="time these methods instead of DAGA's configurations: 'all' or e.g. 'frozen,daga,lora' (frozen is always first)")
    p.add_argument('--method-layers', default='-1', help="the blocks every method adapts, e.g. '-1', '5,8,11' or 'all'")
    p.add_argument('--strict', action='store_true', help='exit 1 when a target is missed')
    p.add_argument('--gpu-hours', action='store_true',
                   help='count FLOPs per COCO image for every backbone (meta device); print the real run\'s GPU-hours')
    p.add_argument('--tflops', type=float, default=300.0,
                   help='GPU throughput --gpu-hours assumes, TFLOP/s (300: about 30%% of an H100\'s dense bf16 peak)')
    args = p.parse_args(argv)
    for name in ('size', 'batch', 'repeats', 'threads'):
        v = getattr(args, name)
        if v is not None and v < 1: p.error(f'--{name} must be >= 1, got {v}')
    if args.warmup < 0: p.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.methods is not None:
        names = list(METHODS) if args.methods == 'all' else [m.strip() for m in args.methods.split(',') if m.strip()]
        unknown = [m for m in names if m not in METHODS]
        if unknown: p.error(f'--methods: {unknown} unknown; use some of {", ".join(METHODS)} or all.')
        args.methods = ['frozen'] + [m for m in names if m != 'frozen']
    if args.device == 'auto': args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try: args.device = torch.device(args.device)
    except RuntimeError as e: p.error(f'--device {args.device!r}: {e}')
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device} asked for, but torch {torch.__version__} sees no CUDA GPU: use --device cpu.')
    if args.device.type not in ('cpu', 'cuda'): p.error(f"--device must be cpu or cuda, got {args.device}")
    return args, p


def main(argv=None) -> int:
    args, parser = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)    # the table and stderr's progress lines interleave in order
    if args.threads: torch.set_num_threads(args.threads)
    if args.gpu_hours:
        gpu_hours(args)
        return 0
    try: backbone = load_backbone(args.backbone)
    except ValueError as e: parser.error(str(e))
    try:
        args.out_indices = (default_out_indices(backbone.depth) if args.out_indices is None
                            else parse_layers(args.out_indices, backbone.depth, 'head out index'))
    except ValueError as e: parser.error(f'--out-indices: {e}')
    if not args.out_indices: parser.error('--out-indices names no block: give at least one, e.g. 11.')
    try: args.method_layers = parse_layers(args.method_layers, backbone.depth, 'method layer')
    except ValueError as e: parser.error(f'--method-layers: {e}')
    if args.size is not None and args.size % backbone.patch_size:
        parser.error(f'--size {args.size} is not a multiple of the patch size {backbone.patch_size}: use e.g. '
                     f'{max(1, args.size // backbone.patch_size) * backbone.patch_size}.')
    backbone.to(args.device)
    tasks = ['classification', 'segmentation', 'depth', 'detection'] if args.task == 'all' else [args.task]
    print('# DAGA train-step time')
    print(f'torch {torch.__version__} | device {_device_name(args.device)} | threads {torch.get_num_threads()} | '
          f"{'bf16 autocast' if args.device.type == 'cuda' else 'fp32'} | backbone {args.backbone} "
          f'(dim {backbone.embed_dim}, {backbone.depth} blocks, random init) | repeats {args.repeats}, '
          f'warm-up {args.warmup}, seed {args.seed}')
    if hasattr(os, 'getloadavg'): print(f'load average at start: {os.getloadavg()[0]:.2f}')
    results = {}
    for task in tasks:
        results[task] = run_task(task, args, backbone, args.device)
        print_table(results[task])
        if task == 'detection' and not args.methods:
            print_detection_layouts(results[task], args.size or TASK_DEFAULTS[task]['size'])
    ok = check_targets(results)
    if hasattr(os, 'getloadavg'): print(f'\nload average at end: {os.getloadavg()[0]:.2f}')
    return 1 if args.strict and not ok else 0


if __name__ == '__main__':
    sys.exit(main())
