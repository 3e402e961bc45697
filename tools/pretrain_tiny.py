"""Reproduce the `tiny` backbone's shipped weights: `python tools/pretrain_tiny.py [--out FOLDER] [--check]`.

Trains by `daga.pretrain.TINY_RECIPE` (nbs/04b_pretrain_tiny.ipynb says what it is and why), writes the result in
Meta's checkpoint format as `<FOLDER>/dinov3_vittiny16_pretrain_shapes-<sha256[:8]>.pth` (default: a temporary folder)
and compares it with the file that ships in daga/weights/. With --check, a difference is an error. With --install, the
result replaces the shipped file (then update PRETRAINED in nbs/00_backbone.ipynb to its new name and export).
"""
import argparse, shutil, sys, tempfile, time
from pathlib import Path

import torch

from daga.backbone import PRETRAINED, WEIGHTS_DIR, load_backbone
from daga.pretrain import TINY_RECIPE, pretrain_tiny, sha256, write_pretrained


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=None, help='folder for the new file (default: a temporary folder)')
    ap.add_argument('--check', action='store_true', help='exit 1 unless the result equals the shipped file')
    ap.add_argument('--install', action='store_true', help='put the result in daga/weights/ for the shipped file')
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix='daga-pretrain-'))
    print(f'recipe: {TINY_RECIPE}', flush=True)
    t0 = time.perf_counter()
    vit = pretrain_tiny(TINY_RECIPE, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - t0
    path = write_pretrained(vit, out)
    print(f'trained in {seconds:.0f} s on {TINY_RECIPE.threads} thread(s): {path} ({path.stat().st_size / 1e6:.2f} MB, '
          f'sha256 {sha256(path)})')
    shipped = WEIGHTS_DIR / PRETRAINED['tiny']
    same = shipped.exists() and shipped.read_bytes() == path.read_bytes()
    if shipped.exists() and not same:
        with torch.no_grad():
            a, b = load_backbone('tiny', weights=shipped).state_dict(), load_backbone('tiny', weights=path).state_dict()
            diff = max((a[k] - b[k]).abs().max().item() for k in a)
        print(f'differs from the shipped {shipped.name}: largest weight difference {diff:.3g}')
    elif same: print(f'identical to the shipped {shipped.name}, byte for byte')
    if args.install:
        for old in WEIGHTS_DIR.glob('dinov3_vittiny16_pretrain_shapes-*.pth'): old.unlink()
        shutil.copy(path, WEIGHTS_DIR / path.name)
        print(f'installed {WEIGHTS_DIR / path.name}; set PRETRAINED["tiny"] = {path.name!r} in nbs/00_backbone.ipynb')
    if args.check and not same: sys.exit(1)


if __name__ == '__main__': main()
