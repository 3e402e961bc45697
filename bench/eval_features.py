"""The frozen-feature evaluations' costs: feature extraction (images/s, the frozen backbone against a DAGA model on it)
and k-NN at scale (time and working memory of 100k x 384 training features against 10k queries).

Extraction is what `daga.evals.features.extract_shard` does per image: one forward of `AdaptedViT` under no_grad,
keeping the last blocks' normed CLS tokens and the mean patch token. The frozen model has no DAGA layer; the DAGA model
has DAGA after the last block (daga_layers=[-1]) with random (not zero) weights, so its modules really compute. The two
alternate round-robin inside every repeat, so load drift hits both alike; the table gives the median and the fastest
repeat and the FLOPs per image (exact, from torch's FlopCounterMode).

k-NN is `daga.evals.knn.knn_scores` with its default chunks: the working memory beyond the features is bounded by
`knn_memory_bytes(query_chunk, train_chunk, k_max, n_train, dim)`, printed next to the measured time and peak RSS growth.

Run from the repository root:  python bench/eval_features.py                  (ViT-S/16 at 224, ~3 min on 2 CPU cores)
                               python bench/eval_features.py --backbone tiny --size 64 --knn_train 20000 --knn_queries 2000   (smoke)
"""
import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # measure this checkout's daga, installed or not
from daga.backbone import load_backbone                            # noqa: E402
from daga.evals.knn import knn_memory_bytes, knn_scores            # noqa: E402
from daga.model import AdaptedViT                                  # noqa: E402


def extract(model, images, blocks):
    "What extract_shard computes for a batch."
    with torch.no_grad():
        f = model(images, layers=blocks)
        return torch.stack([f.intermediate_cls[b] for b in blocks], 1), f.patch_mean


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--backbone', default='vits16')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--knn_train', type=int, default=100_000)
    ap.add_argument('--knn_queries', type=int, default=10_000)
    ap.add_argument('--dim', type=int, default=384)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    backbone = load_backbone(args.backbone)
    blocks = list(range(backbone.depth - 4, backbone.depth))
    frozen, daga = AdaptedViT(backbone, []).eval(), AdaptedViT(backbone, [-1]).eval()
    with torch.no_grad():
        for q in daga.daga.parameters(): q.normal_(0, 0.02)          # DAGA that changes the tokens, not its zero init
    images = torch.randn(args.batch, 3, args.size, args.size)
    times = {'frozen': [], 'daga': []}
    flops = {}
    for name, model in (('frozen', frozen), ('daga', daga)):
        extract(model, images, blocks)                                 # warm-up
        with FlopCounterMode(display=False) as counter: extract(model, images[:1], blocks)
        flops[name] = counter.get_total_flops()
    for _ in range(args.repeats):
        for name, model in (('frozen', frozen), ('daga', daga)):
            t0 = time.perf_counter(); extract(model, images, blocks); times[name].append(time.perf_counter() - t0)
    print(f'## Feature extraction: {args.backbone}, {args.size}px, batch {args.batch}, {args.threads} threads, median of {args.repeats}\n')
    print('| model | images/s (median) | images/s (best) | x frozen time | GFLOP / image | x frozen FLOPs |')
    print('|---|---:|---:|---:|---:|---:|')
    for name in ('frozen', 'daga'):
        med, best = statistics.median(times[name]), min(times[name])
        print(f"| {name} | {args.batch / med:.1f} | {args.batch / best:.1f} | {med / statistics.median(times['frozen']):.3f} | "
              f"{flops[name] / 1e9:.2f} | {flops[name] / flops['frozen']:.3f} |")

    g = torch.Generator().manual_seed(0)
    train, labels = torch.randn(args.knn_train, args.dim, generator=g), torch.randint(0, 1000, (args.knn_train,), generator=g)
    queries = torch.randn(args.knn_queries, args.dim, generator=g)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    knn_scores(train, labels, queries, 1000, ks=(10, 20, 100, 200))
    seconds = time.perf_counter() - t0
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    bound = knn_memory_bytes(256, 65536, 200, n_train=args.knn_train, dim=args.dim) / 2 ** 20
    print(f'\n## k-NN: {args.knn_train:,} x {args.dim} training features, {args.knn_queries:,} queries, k in 10/20/100/200, 1000 classes\n')
    print(f'{seconds:.1f} s on {args.threads} threads; working memory bound (the normalised training copy, query_chunk 256 x train_chunk 65,536, k 200): '
          f'{bound:.0f} MiB; peak RSS grew by {rss:.0f} MiB (the votes, {args.knn_queries * 1000 * 4 * 4 / 2 ** 20:.0f} MiB for '
          f'four k, are part of the output).')


if __name__ == '__main__': main()
