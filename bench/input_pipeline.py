"""Can the input pipeline keep a GPU busy? Decode + augment images/s per DataLoader worker, per task at its real size.

For each task the real training dataset of its run (the task's own `build_data`, with the real profile's sizes) reads
generated files of real sizes, written in the real formats by `daga.synthetic`:

  classification  ImageNet folders, 432 x 432 JPEGs (the pixel count of a typical 500 x 375 photo) -> 224 crops
  segmentation    ADE20K, 592 x 592 JPEG + label PNG (the pixel count of a typical 683 x 512 ADE20K image) -> 512 crops
  depth           NYU Depth v2, 480 x 640 JPEG + 16-bit depth PNG (the real frame) -> 416 x 544 crops
  detection       COCO 2017, 640 x 480 / 480 x 640 / 640 x 640 JPEGs -> the 640 canvas

One process with one torch thread computes samples one after another, as one DataLoader worker does (torch gives each
worker one thread). Beside it: the images/s one GPU's training step consumes, from the step's exact FLOP count
(ViT-B/16, counted on the meta device: no compute, nothing the machine's load can move) at a stated throughput
(default 400 TFLOP/s: 40% of an H100 SXM's 989 dense bf16 TFLOP/s), and the workers per GPU that follow.

Decoding is measured twice, PIL (what the datasets use) and torchvision.io, on the same files, and the pixels compared.

Run from the repository root:  python bench/input_pipeline.py --threads 1
                               python bench/input_pipeline.py --tasks depth --files 4    (smoke test, ~30 s)
"""
import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.io as tio
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # measure this checkout's daga, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daga.backbone import load_backbone                            # noqa: E402
from daga.model import AdaptedViT                                  # noqa: E402
from daga.synthetic import write_ade20k, write_coco, write_imagefolder, write_nyu   # noqa: E402
from daga.tasks import classification, depth, detection, segmentation             # noqa: E402
from step_time import _head                                        # noqa: E402  the heads step_time.py times

# task -> (files written, training input (h, w), what the generated files are, real per-step batch over all GPUs)
REAL = {'classification': dict(size=(224, 224), files='432 x 432 JPEG', batch=256),
        'segmentation': dict(size=(512, 512), files='592 x 592 JPEG + PNG', batch=16),
        'depth': dict(size=(416, 544), files='480 x 640 JPEG + 16-bit PNG', batch=16),
        'detection': dict(size=(640, 640), files='640 x 480 .. 640 x 640 JPEG', batch=32)}
H100_BF16_DENSE_TFLOPS = 989.0


_MODULES = {'classification': classification, 'segmentation': segmentation, 'depth': depth, 'detection': detection}


def write_data(task, root: Path, n: int) -> Path:
    "Generated files of real sizes for `task` (written once; the writers are deterministic and keep what exists)."
    if task == 'classification':
        return write_imagefolder(root / 'imagenet', n_train_per_class=math.ceil(n / 6), n_val_per_class=1,
                                 image_size=432)
    if task == 'segmentation': return write_ade20k(root / 'ade20k', n_train=n, n_val=1, image_size=592)
    if task == 'depth': return write_nyu(root / 'nyu', n_train=n, n_test=1, image_size=(480, 640))
    return write_coco(root / 'coco', n_train=max(2, n), n_val=2, image_size=640, n_objects=(2, 7))


def train_dataset(task, folder):
    "The training dataset a real run of `task` builds (its build_data at the real profile's sizes), augmented."
    if task == 'classification':
        p = classification.ClassificationParams(data_root=str(folder), dataset='imagefolder', image_size=224)
    elif task == 'segmentation': p = segmentation.SegmentationParams(data_root=str(folder), crop_size=512)
    elif task == 'depth': p = depth.DepthParams(data_root=str(folder), crop_size=[416, 544])
    else: p = detection.DetectionParams(data_root=str(folder), image_size=640, min_scale=0.5)
    return _MODULES[task].build_data(p).train


def _pil_rgb(path): return torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)   # (3, H, W)
def _tv_rgb(path): return tio.decode_jpeg(tio.read_file(str(path)), mode=tio.ImageReadMode.RGB)


def _per_call_ms(fn, items, repeats):
    "Fastest mean time per item over `repeats` passes, in ms (other processes only ever add time)."
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for item in items: fn(item)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return 1e3 * best


def decoders(folder, repeats):
    "(PIL ms, torchvision.io ms per JPEG, max |pixel difference|) over the JPEGs of `folder`'s training images."
    jpegs = sorted(p for p in folder.rglob('*') if p.suffix.lower() in ('.jpg', '.jpeg') and 'val' not in p.parts[-2])
    diff = max(int((_pil_rgb(p).int() - _tv_rgb(p).int()).abs().max()) for p in jpegs)
    return _per_call_ms(_pil_rgb, jpegs, repeats), _per_call_ms(_tv_rgb, jpegs, repeats), diff


def sample_times(dataset, passes):
    "Seconds per sample (decode + augment), one per sample and pass, epochs changing between passes."
    times = []
    for epoch in range(passes):
        for i in range(len(dataset)):
            t0 = time.perf_counter()
            dataset[(epoch, i)]
            times.append(time.perf_counter() - t0)
    return times


def _base(dataset):
    "The dataset that decodes and transforms, inside EpochSeeded / Subset wrappers."
    while not hasattr(dataset, 'transform') and not hasattr(dataset, 'transforms'): dataset = dataset.dataset
    return dataset


def step_breakdown(dataset, passes) -> dict:
    "{step: ms per sample}: the decode (the dataset without transforms), then each step of its v2.Compose on its own."
    base = _base(dataset)
    joint = hasattr(base, 'transforms')                 # ADE20K, NYU, COCO transform (image, target) together
    name = 'transforms' if joint else 'transform'
    compose = getattr(base, name)
    setattr(base, name, None)
    try:
        samples = [base[i] for i in range(len(base))]
        ms = {'decode': _per_call_ms(base.__getitem__, range(len(base)), passes)}
    finally: setattr(base, name, compose)
    for step in compose.transforms:
        total = 0.0
        for _ in range(passes):
            t0 = time.perf_counter()
            outputs = [step(*sample) if joint else (step(sample[0]), sample[1]) for sample in samples]
            total += time.perf_counter() - t0
        samples = outputs
        ms[type(step).__name__] = 1e3 * total / passes / len(samples)
    return ms


def step_flops_per_image(task, backbone, daga_layers) -> float:
    "FLOPs of one training step per image (forward, backward into the trainable parts), counted on the meta device."
    torch.manual_seed(0)
    h, w = REAL[task]['size']
    model = AdaptedViT(backbone, daga_layers).to('meta').train()
    head = _head(task, backbone, [2, 5, 8, 11]).to('meta').train()
    images = torch.randn(1, 3, h, w, device='meta')
    with FlopCounterMode(display=False) as counter:
        out = head(model(images, layers=head.layers)) if task in ('classification', 'detection') else \
              head(model(images, layers=head.layers), size=(h, w))
        outputs = [v for v in (out.values() if isinstance(out, dict) else [out]) if torch.is_tensor(v)]
        sum(o.float().sum() for o in outputs).backward()       # a stand-in loss: its own FLOPs are negligible
    return counter.get_total_flops()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--tasks', default='all', help="comma-separated tasks, or 'all'")
    p.add_argument('--files', type=int, default=24, help='generated training files per task')
    p.add_argument('--passes', type=int, default=3, help='passes over the files (new augmentation each pass)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads of the measuring process (a DataLoader worker has 1)')
    p.add_argument('--tflops', type=float, default=0.4 * H100_BF16_DENSE_TFLOPS,
                   help='GPU throughput the model is assumed to reach, TFLOP/s (default: 40%% of an H100 SXM, bf16)')
    p.add_argument('--backbone', default='vitb16')
    p.add_argument('--data-dir', default='outputs/bench/input_pipeline',
                   help='where the generated files go (kept for reruns)')
    args = p.parse_args(argv)
    args.tasks = list(REAL) if args.tasks == 'all' else [t.strip() for t in args.tasks.split(',') if t.strip()]
    unknown = [t for t in args.tasks if t not in REAL]
    if unknown: p.error(f'--tasks: {unknown} unknown; use some of {", ".join(REAL)} or all.')
    for name in ('files', 'passes', 'threads'):
        if getattr(args, name) < 1: p.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.tflops <= 0: p.error(f'--tflops must be > 0, got {args.tflops}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone).to('meta')
    print('# Input pipeline: decode + augment per DataLoader worker, against what one GPU consumes')
    print(f'torch {torch.__version__} | {os.cpu_count()} logical cores | '
          f'measuring with {torch.get_num_threads()} thread(s) | '
          f'model: {args.backbone} at {args.tflops:.0f} TFLOP/s | {args.files} files per task, {args.passes} passes')
    if hasattr(os, 'getloadavg'): print(f'load average at start: {os.getloadavg()[0]:.2f}')
    rows = []
    for task in args.tasks:
        folder = write_data(task, Path(args.data_dir), args.files)
        dataset = train_dataset(task, folder)
        pil_ms, tv_ms, diff = decoders(folder, args.passes)
        times = sample_times(dataset, args.passes)
        steps = step_breakdown(dataset, args.passes)
        print(f'  {task}, ms per sample: ' + ', '.join(f'{k} {v:.1f}' for k, v in steps.items()), flush=True)
        per_worker = 1 / statistics.median(times)
        flops = {name: step_flops_per_image(task, backbone, layers)
                 for name, layers in (('frozen', []), ('daga', [backbone.depth - 1]))}
        gpu = args.tflops * 1e12 / flops['daga']
        rows.append((task, REAL[task]['files'], len(dataset), pil_ms, tv_ms, diff, 1e3 * statistics.median(times),
                     1e3 * min(times), per_worker, flops['frozen'] / 1e9, flops['daga'] / 1e9, gpu,
                     math.ceil(gpu / per_worker), math.ceil(gpu * min(times))))
        rows[-1] += (' / '.join(f'{k} {v:.1f}' for k, v in steps.items()),)
        print(f'  {task}: {per_worker:.1f} images/s per worker, the GPU {gpu:.0f} images/s', file=sys.stderr)
    print('\n| task | files | samples | decode ms PIL | decode ms torchvision.io | max pixel diff '
          '| sample ms (median / min) | images/s per worker (median) | GFLOP/image frozen | GFLOP/image DAGA [11] '
          '| GPU images/s (DAGA [11]) | workers per GPU (median / min) |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f'| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} | {r[6]:.1f} / {r[7]:.1f} | {r[8]:.1f} '
              f'| {r[9]:.1f} | {r[10]:.1f} | {r[11]:,.0f} | {r[12]} / {r[13]} |')
    print('\nms per sample, step by step (each step of the dataset\'s v2.Compose timed on its own, after the decode):')
    for r in rows: print(f'- {r[0]}: {r[14]}')
    print('\nsample = one training sample of the task\'s own dataset (decode, augment, normalise), in this process; '
          'workers per GPU = GPU images/s / images/s per worker, from the median sample and from the fastest (which '
          'other processes cannot slow). GFLOP/image: one training step (forward, backward into the head and DAGA) '
          'per image, exact.')
    if hasattr(os, 'getloadavg'): print(f'load average at end: {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
