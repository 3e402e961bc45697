"""The first GPU run, prepared: one script, one table, at most 8 minutes on one GPU (`make gpu-check`).

Sections, each with its own time budget; a failing section is a FAIL row of the table, never a crash, and the table
is printed whatever happens (and each row as soon as it is known, in case the machine is taken away):

  steps/<task>   20 training steps at real sizes per task (ViT-B/16, random init, bf16 autocast): the frozen baseline
                 and DAGA [11], the step ratio (the issue's target: <= 1.10), images/s, CUDA peak memory
  bf16           DAGA [11] features under bf16 autocast against fp32: relative L2 error <= 0.05, cosine >= 0.999
  ddp            DDP (NCCL, one process) through daga.distributed.wrap_model equals the plain model after 3 SGD steps
  syncbn         SyncBatchNorm's distributed path (the kernels and the collective several GPUs use) equals BatchNorm
  checkpointing  DAGA [1,2,10,11]: CUDA peak memory and step time with and without grad_checkpointing, gradients equal
  compile        torch.compile'd blocks: the same features, the compile time, the step time with and without

Without a GPU the same code runs on the CPU at tiny sizes (the tiny backbone, 64 px, 3 steps, compile through
'aot_eager': inductor's C++ build alone takes a minute there), says so, and passes: `make test` runs it that way
(nbs/41_gpu_check.ipynb). SyncBatchNorm has no CPU kernels: that row is a skip on the CPU.

Run from the repository root:  python bench/gpu_check.py              (GPU: the real sizes; CPU: the tiny form)
                               python bench/gpu_check.py --device cpu --compile-backend inductor   (inductor on CPU)
"""
import argparse
import contextlib
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # check this checkout's daga, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daga.backbone import load_backbone                            # noqa: E402
from daga.distributed import wrap_model                            # noqa: E402
from daga.heads import TaskModel, default_out_indices                # noqa: E402
from daga.model import AdaptedViT                                  # noqa: E402
from daga.tasks import detection                                   # noqa: E402
from daga.tasks.segmentation import segmentation_loss              # noqa: E402
from step_time import Config, _device_name, _head, _inputs, _train_step   # noqa: E402  step_time.py's step and heads

TASKS = ('classification', 'segmentation', 'depth', 'detection')
# the real per-GPU sizes (one GPU takes a whole real batch) and the tiny CPU form; (h, w), batch
GPU_SIZES = {'classification': ((224, 224), 256), 'segmentation': ((512, 512), 16), 'depth': ((416, 544), 16),
             'detection': ((640, 640), 32)}
CPU_SIZES = {'classification': ((64, 64), 2), 'segmentation': ((64, 64), 2), 'depth': ((64, 80), 2),
             'detection': ((64, 64), 2)}
TOTAL_BUDGET_S = 450          # the whole check: under 8 minutes on one GPU, leaving time to start
BUDGET_S = {'steps': 60, 'bf16': 30, 'ddp': 60, 'syncbn': 30, 'checkpointing': 90, 'compile': 240}
BF16_REL_TOL, BF16_COS_MIN = 0.05, 0.999     # bf16 keeps 8 bits of mantissa: ~4e-3 per rounding, twelve blocks deep
STEP_RATIO_TARGET = 1.10                     # the DAGA [11] / baseline train-step time


@dataclass
class Row:
    "One line of the table."
    section: str
    what: str
    result: str = ''
    expected: str = ''
    status: str = 'pass'        # pass | FAIL | skip
    seconds: float = 0.0


class SectionTimeout(Exception):
    "A section ran past its time budget."


@contextlib.contextmanager
def time_limit(seconds):
    "Raise SectionTimeout in the main thread after `seconds` (SIGALRM; no limit where there is none)."
    if not hasattr(signal, 'SIGALRM') or seconds <= 0:
        yield
        return
    def expire(signum, frame): raise SectionTimeout(f'ran past its budget of {seconds:.0f} s')
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try: yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Check:
    "The device, the sizes, the clock and the rows of one run."
    def __init__(self, args):
        self.args, self.device, self.rows, self.t0 = args, args.device, [], time.perf_counter()
        self.cuda = self.device.type == 'cuda'
        self.sizes = GPU_SIZES if self.cuda else CPU_SIZES
        self.steps = args.steps or (20 if self.cuda else 3)
        self.warmup = 2 if self.cuda else 1            # untimed steps before timing (cuDNN, allocator, compile)
        self.backbone_name = args.backbone or ('vitb16' if self.cuda else 'tiny')
        self.compile_backend = args.compile_backend or ('inductor' if self.cuda else 'aot_eager')
        self._backbone = None

    @property
    def backbone(self):
        "The random-init backbone on the device, built once."
        if self._backbone is None: self._backbone = load_backbone(self.backbone_name).to(self.device)
        return self._backbone

    def autocast(self, enabled=True):
        "bf16 autocast on the device (the CPU has one too: the same code path)."
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def sync(self):
        if self.cuda: torch.cuda.synchronize(self.device)

    def peak_reset(self):
        if self.cuda: torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self):
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else float('nan')

    def left(self) -> float: return TOTAL_BUDGET_S - (time.perf_counter() - self.t0)

    def run(self, section, what, fn, budget):
        "Run fn(row) under min(budget, time left); any exception is a FAIL row with its message. Prints the row."
        row = Row(section, what)
        t0 = time.perf_counter()
        limit = min(budget, self.left())
        if limit < 5:
            row.status, row.result = 'skip', f'out of time: {TOTAL_BUDGET_S} s budget spent'
        else:
            try:
                with time_limit(limit if self.cuda else 0): fn(row)
            except Exception as e:                                   # noqa: BLE001  the table must come out
                row.status = 'FAIL'
                row.result = f'{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ""}'
                traceback.print_exc(file=sys.stderr)
            finally:
                if self.cuda:
                    with contextlib.suppress(Exception): torch.cuda.empty_cache()
        row.seconds = time.perf_counter() - t0
        self.rows.append(row)
        print(f'  {row.status:4} {section}: {row.result} ({row.seconds:.1f} s)', file=sys.stderr, flush=True)
        return row


def _head_for(check, task):
    "step_time.py's head; DETR sized as the real profile on a GPU, as the generated one (10 queries) on the CPU."
    bb = check.backbone
    if task != 'detection': return _head(task, bb, [2, 5, 8, bb.depth - 1])
    profile = detection.DetectionParams.REAL if check.cuda else detection.DetectionParams.GENERATED
    names = ('num_queries', 'd_model', 'nhead', 'num_decoder_layers', 'num_encoder_layers', 'dim_feedforward',
             'dropout')
    blocks = default_out_indices(bb.depth) if check.cuda else [bb.depth - 1]     # the real profile's 4 on a GPU
    return detection.build_head(SimpleNamespace(out_indices=blocks, padding_mask=True,
                                                **{k: profile[k] for k in names}), bb, 80)


def _config(check, task, layers, **vit_kwargs):
    "A step_time Config: AdaptedViT (DAGA at `layers`) and the task's head on the device, AdamW over what trains."
    torch.manual_seed(0)
    bb = check.backbone
    model = AdaptedViT(bb, layers, **vit_kwargs).to(check.device).train()
    head = _head_for(check, task).to(check.device).train()
    cfg = Config(f'DAGA {layers}' if layers else 'baseline', 'daga' if layers else 'baseline', model, head, False)
    cfg.opt = torch.optim.AdamW(cfg.trainable, lr=1e-4, weight_decay=1e-2)
    return cfg


def _inputs_for(check, task):
    (h, w), batch = check.sizes[task]
    return _inputs(task, batch, (h, w), check.device, seed=0)


def _timed_steps(check, cfg, task, images, target, n):
    "n train steps after the warm-up; (median step s, peak GiB)."
    autocast = lambda: check.autocast()
    for _ in range(check.warmup): _train_step(cfg, task, images, target, autocast, check.sync)
    check.peak_reset()
    times = []
    for _ in range(n):
        fwd, bwd, _ = _train_step(cfg, task, images, target, autocast, check.sync)
        times.append(fwd + bwd)
    return statistics.median(times), check.peak_gib()


def section_steps(check, task):
    "Baseline and DAGA [11] at the task's size: step ratio, images/s, peak memory."
    def run(row):
        images, target = _inputs_for(check, task)
        batch = images.shape[0]
        last = check.backbone.depth - 1
        results = {}
        for name, layers in (('baseline', []), ('daga', [last])):
            cfg = _config(check, task, layers)
            step, peak = _timed_steps(check, cfg, task, images, target, check.steps)
            finite = all(p.grad is None or torch.isfinite(p.grad).all() for p in cfg.trainable)
            if not finite: raise FloatingPointError(f'{name}: a gradient is not finite')
            results[name] = (step, peak)
            del cfg
        (b_step, b_peak), (d_step, d_peak) = results['baseline'], results['daga']
        ratio = d_step / b_step
        row.result = (f'{ratio:.2f}x step; {batch / b_step:,.0f} / {batch / d_step:,.0f} img/s; '
                      + (f'peak {b_peak:.1f} / {d_peak:.1f} GiB' if check.cuda else 'no CUDA peak on the CPU'))
        row.expected = f'DAGA [11] <= {STEP_RATIO_TARGET:.2f}x (issue)' + ('' if check.cuda else ': GPU only')
        if check.cuda and ratio > STEP_RATIO_TARGET: row.result += ' (target MISSED)'
    (h, w), batch = check.sizes[task]
    what = f'{batch} x {h}x{w}, {check.steps} steps, baseline / DAGA [11]'
    return check.run(f'steps/{task}', what, run, BUDGET_S['steps'])


def _tokens(features):
    "CLS and patch tokens of a Features, (B, (1 + h*w) * D)."
    return torch.cat([features.cls, features.patches.flatten(1)], 1)


def _relative(a, b):
    "(relative L2 error of b against a, cosine similarity), flattened, in float64."
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / a.norm().clamp_min(1e-12)), float(F.cosine_similarity(a, b, dim=0))


def section_bf16(check):
    def run(row):
        images, _ = _inputs_for(check, 'segmentation')
        torch.manual_seed(0)
        model = AdaptedViT(check.backbone, [check.backbone.depth - 1]).to(check.device).eval()
        with torch.no_grad():
            with check.autocast(False): ref = model(images)
            with check.autocast(): low = model(images)
        rel, cos = _relative(_tokens(ref), _tokens(low).float())
        row.result = f'rel. L2 error {rel:.2e}, cosine {cos:.5f}'
        row.expected = f'<= {BF16_REL_TOL}, >= {BF16_COS_MIN}'
        if not (rel <= BF16_REL_TOL and cos >= BF16_COS_MIN): row.status = 'FAIL'
    (h, w), batch = check.sizes['segmentation']
    return check.run('bf16', f'DAGA [11] features, {batch} x {h}x{w}, bf16 autocast vs fp32', run, BUDGET_S['bf16'])


@contextlib.contextmanager
def one_process_group(check):
    "A process group of one: NCCL on the GPU, gloo on the CPU (a FileStore in a temporary folder)."
    if dist.is_initialized(): raise RuntimeError('a process group is already initialised in this process')
    backend = 'nccl' if check.cuda else 'gloo'
    with tempfile.TemporaryDirectory() as tmp:
        store = dist.FileStore(os.path.join(tmp, 'store'), 1)
        kw = dict(device_id=check.device) if check.cuda else {}
        dist.init_process_group(backend, store=store, rank=0, world_size=1, **kw)
        try: yield backend
        finally: dist.destroy_process_group()


def _seg_model(check):
    "DAGA [11] and the segmentation head (BatchNorm inside), seeded: two calls build the same model."
    torch.manual_seed(0)
    return TaskModel(AdaptedViT(check.backbone, [check.backbone.depth - 1]),
                     _head_for(check, 'segmentation')).to(check.device).train()


def section_ddp(check):
    "DDP over one process, as daga.distributed.wrap_model builds it for several, against the plain model."
    def run(row):
        images, masks = _inputs_for(check, 'segmentation')
        with one_process_group(check) as backend:
            plain = _seg_model(check)
            wrapped = wrap_model(_seg_model(check), SimpleNamespace(distributed=True, device=check.device))
            inner = wrapped.module
            sync_bn = any(isinstance(m, nn.SyncBatchNorm) for m in inner.modules())
            for model in (plain, wrapped):
                torch.manual_seed(1)                                 # the same dropout masks for both
                opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
                for _ in range(3):
                    opt.zero_grad(set_to_none=True)
                    segmentation_loss(model, (images, masks)).backward()
                    opt.step()
            diff = max(float((a - b).detach().abs().max())
                       for a, b in zip(plain.parameters(), inner.parameters()) if a.requires_grad)
        row.result = (f'{backend}, {type(wrapped).__name__}, SyncBatchNorm {"in" if sync_bn else "not in"} the head; '
                      f'largest weight difference after 3 SGD steps {diff:.1e}')
        row.expected = '<= 1e-5; SyncBatchNorm on CUDA only'
        if diff > 1e-5 or sync_bn != check.cuda: row.status = 'FAIL'
    return check.run('ddp', 'DDP (one process) vs no DDP, segmentation head', run, BUDGET_S['ddp'])


def section_syncbn(check):
    "SyncBatchNorm's distributed function (all-gather of the statistics, the reduce in backward) against F.batch_norm."
    def run(row):
        if not check.cuda:
            row.status, row.result = 'skip', 'torch has no CPU kernels for it (aten::batch_norm_stats): GPU only'
            return
        from torch.nn.modules._functions import SyncBatchNorm as SyncBatchNormFunction
        g = torch.Generator(device=check.device).manual_seed(0)
        x = torch.randn(16, 64, 32, 32, device=check.device, generator=g) * 3 + 1
        weight = torch.rand(64, device=check.device, generator=g) + 0.5
        bias = torch.randn(64, device=check.device, generator=g)
        outs = []
        with one_process_group(check):
            for synced in (True, False):
                xi, wi, bi = (t.clone().requires_grad_(True) for t in (x, weight, bias))
                mean, var = torch.zeros(64, device=check.device), torch.ones(64, device=check.device)
                if synced: y = SyncBatchNormFunction.apply(xi, wi, bi, mean, var, 1e-5, 0.1, dist.group.WORLD, 1)
                else: y = F.batch_norm(xi, mean, var, wi, bi, True, 0.1, 1e-5)
                (y * torch.linspace(-1, 1, y.numel(), device=check.device).view_as(y)).sum().backward()
                outs.append([y.detach(), xi.grad, wi.grad, bi.grad, mean, var])
        diff = max(float((a - b).abs().max()) for a, b in zip(*outs))
        row.result, row.expected = f'largest difference (output, 3 gradients, running stats) {diff:.1e}', '<= 1e-4'
        if diff > 1e-4: row.status = 'FAIL'
    return check.run('syncbn', 'SyncBatchNorm (NCCL, one process) vs BatchNorm', run, BUDGET_S['syncbn'])


def section_checkpointing(check):
    "DAGA [1,2,10,11] on segmentation (the backward crosses ten blocks): memory and time, checkpointing off and on."
    def run(row):
        images, target = _inputs_for(check, 'segmentation')
        depth = check.backbone.depth
        layers = [1, 2, depth - 2, depth - 1]
        figures, grads = {}, {}
        for on in (False, True):
            cfg = _config(check, 'segmentation', layers, grad_checkpointing=on)
            step, peak = _timed_steps(check, cfg, 'segmentation', images, target, max(3, check.steps // 4))
            cfg.opt.zero_grad(set_to_none=True)
            torch.manual_seed(0)
            fresh = _config(check, 'segmentation', layers, grad_checkpointing=on)       # untrained: same start
            with check.autocast(False):
                feats = fresh.model(images, layers=fresh.head.layers)
                logits = fresh.head(feats, size=tuple(images.shape[-2:])).float()
                F.cross_entropy(logits, target, ignore_index=255).backward()
            grads[on] = torch.cat([p.grad.flatten() for p in fresh.model.parameters() if p.requires_grad])
            figures[on] = (step, peak)
            del cfg, fresh
        rel, _ = _relative(grads[False], grads[True])
        (s0, p0), (s1, p1) = figures[False], figures[True]
        memory = f'peak {p0:.1f} -> {p1:.1f} GiB ({p1 / p0:.2f}x)' if check.cuda else 'no CUDA peak on the CPU'
        row.result = f'{memory}; step {s1 / s0:.2f}x; gradient rel. diff (fp32) {rel:.1e}'
        row.expected = 'gradients <= 1e-5; memory down, time up ~1/3 of a backbone forward'
        if rel > 1e-5 or (check.cuda and p1 >= p0): row.status = 'FAIL'
    (h, w), batch = check.sizes['segmentation']
    return check.run('checkpointing', f'DAGA [1,2,10,11], {batch} x {h}x{w}, grad_checkpointing off / on', run,
                     BUDGET_S['checkpointing'])


def section_compile(check):
    "torch.compile'd blocks (DAGA [11], segmentation): the same features, compile time, step time."
    def run(row):
        torch._dynamo.reset()
        images, target = _inputs_for(check, 'segmentation')
        last = check.backbone.depth - 1
        eager = _config(check, 'segmentation', [last])
        compiled = _config(check, 'segmentation', [last], compile=check.compile_backend)
        compiled.model.load_state_dict(eager.model.state_dict())
        autocast = lambda: check.autocast()
        t0 = time.perf_counter()
        _train_step(compiled, 'segmentation', images, target, autocast, check.sync)     # compiles
        first = time.perf_counter() - t0
        steps = {}
        for name, cfg in (('eager', eager), ('compiled', compiled)):
            steps[name], _ = _timed_steps(check, cfg, 'segmentation', images, target, max(3, check.steps // 2))
        eager.model.eval(); compiled.model.eval()
        compiled.model.load_state_dict(eager.model.state_dict())
        with torch.no_grad(), check.autocast(False):
            a, b = eager.model(images), compiled.model(images)
        rel, _ = _relative(_tokens(a), _tokens(b))
        e, c = steps['eager'], steps['compiled']
        row.result = (f'{check.compile_backend}: compile ~{first - e:.0f} s, step {1e3 * e:.1f} -> {1e3 * c:.1f} ms '
                      f'(speed-up {e / c:.2f}x); features rel. diff {rel:.1e}')
        row.expected = 'features <= 1e-4 (fp32)'
        if rel > 1e-4: row.status = 'FAIL'
    (h, w), batch = check.sizes['segmentation']
    return check.run('compile', f'compiled blocks vs eager, DAGA [11], {batch} x {h}x{w}', run, BUDGET_S['compile'])


def print_table(check):
    print('\n| section | what | result | expected | status | s |')
    print('|---|---|---|---|---|---:|')
    for r in check.rows:
        print(f'| {r.section} | {r.what} | {r.result} | {r.expected} | {r.status} | {r.seconds:.1f} |')
    failed = [r.section for r in check.rows if r.status == 'FAIL']
    print(f'\n{len(check.rows) - len(failed)} of {len(check.rows)} sections passed or skipped'
          + (f'; FAILED: {", ".join(failed)}' if failed else '') + f'; {time.perf_counter() - check.t0:.0f} s in all.')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='auto', help="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument('--steps', type=int, default=None,
                   help='timed steps per configuration (default: 20 on a GPU, 3 on the CPU)')
    p.add_argument('--backbone', default=None, help='default: vitb16 on a GPU, tiny on the CPU')
    p.add_argument('--compile-backend', default=None, help="default: inductor on a GPU, aot_eager on the CPU")
    p.add_argument('--sections', default='all',
                   help='comma-separated: steps, bf16, ddp, syncbn, checkpointing, compile')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    args = p.parse_args(argv)
    if args.device == 'auto': args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try: args.device = torch.device(args.device)
    except RuntimeError as e: p.error(f'--device {args.device!r}: {e}')
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device} asked for, but torch {torch.__version__} sees no CUDA GPU: use --device cpu '
                '(the tiny CPU form) or run on a machine with a GPU.')
    if args.device.type not in ('cpu', 'cuda'): p.error(f'--device must be cpu or cuda, got {args.device}')
    if args.device.type == 'cuda' and args.device.index is None:
        args.device = torch.device('cuda', torch.cuda.current_device())
    if args.steps is not None and args.steps < 1: p.error(f'--steps must be >= 1, got {args.steps}')
    known = ('steps', 'bf16', 'ddp', 'syncbn', 'checkpointing', 'compile')
    args.sections = list(known) if args.sections == 'all' else [s.strip() for s in args.sections.split(',')
                                                                  if s.strip()]
    unknown = [s for s in args.sections if s not in known]
    if unknown: p.error(f'--sections: {unknown} unknown; use some of {", ".join(known)} or all.')
    return args


def main(argv=None):
    "Run the check; returns (exit code, the rows)."
    args = parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    if args.device.type == 'cuda': torch.cuda.set_device(args.device)
    check = Check(args)
    print('# GPU check')
    print(f'torch {torch.__version__} | device {_device_name(args.device)} | '
          f'backbone {check.backbone_name} (random init) | '
          f'bf16 autocast | {check.steps} steps | compile backend {check.compile_backend}')
    if not check.cuda:
        print('No GPU: this is the CPU form, at tiny sizes (the tiny backbone, 64 px, batch 2). It checks that every '
              'section runs and agrees; its times and ratios say nothing about a GPU.')
    sections = {'steps': lambda: [section_steps(check, t) for t in TASKS], 'bf16': lambda: section_bf16(check),
                'ddp': lambda: section_ddp(check), 'syncbn': lambda: section_syncbn(check),
                'checkpointing': lambda: section_checkpointing(check), 'compile': lambda: section_compile(check)}
    for name in args.sections: sections[name]()
    print_table(check)
    return (1 if any(r.status == 'FAIL' for r in check.rows) else 0), check.rows


if __name__ == '__main__':
    sys.exit(main()[0])
