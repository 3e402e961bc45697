"""`make test`: every notebook through nbdev's own notebook tester (`nbdev.test.test_nb`, what `nbdev_test` runs), in
parallel, then one closing line counted from what actually ran: `N passed, M failed, K skipped`.

`nbdev_test` prints only "Success." or the failing names, so a count typed elsewhere could not fail. Here each
notebook's result is its own: passed, failed, or skipped. A notebook that cannot run here (the browser test without
Chromium) says so by writing its reason to a file in `$DAGA_TEST_SKIPS`; with `DAGA_NO_SKIPS=1` (CI) a skip fails the
run. Options: --path GLOB (default: every notebook), --flags (nbdev test flags to run, e.g. slow), --n_workers.
"""
import argparse, os, sys, tempfile, time
from pathlib import Path

from fastcore.parallel import parallel
from fastcore.xtras import working_directory
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file, test_nb


def run(path=None, flags='', n_workers=2):
    "{notebook: ('passed'|'failed'|'skipped', seconds, reason)} for every notebook matching `path`."
    cfg = get_config()
    files = [f.absolute() for f in sorted(nbglob(path, as_path=True)) if _keep_file(f, '.notest')]
    if not files: sys.exit(f'no notebooks match {path!r}')
    skips = Path(tempfile.mkdtemp(prefix='daga-test-skips-'))
    os.environ['DAGA_TEST_SKIPS'] = str(skips)           # the workers inherit it; a notebook that skips writes there
    with working_directory(cfg.nbs_path):
        results = parallel(test_nb, files, skip_flags=cfg.tst_flags.split(), force_flags=flags.split(),
                           n_workers=min(n_workers, len(files)), basepath=cfg.config_path, pause=0.01)
    outcome = {}
    for f, (passed, seconds) in zip(files, results):
        skip = skips / f.name
        status = 'failed' if not passed else 'skipped' if skip.exists() else 'passed'
        outcome[f.name] = (status, seconds, skip.read_text().strip() if skip.exists() else '')
    return outcome


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--path', default=None)
    ap.add_argument('--flags', default='')
    ap.add_argument('--n_workers', type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.time()
    outcome = run(args.path, args.flags, args.n_workers)
    print(f'\n{len(outcome)} notebooks in {time.time() - t0:.0f} s:')
    for name, (status, seconds, reason) in sorted(outcome.items(), key=lambda kv: -kv[1][1]):
        print(f'  {status:<8} {seconds:5.0f} s  {name}' + (f'  ({reason})' if reason else ''))
    count = {s: sum(o[0] == s for o in outcome.values()) for s in ('passed', 'failed', 'skipped')}
    no_skips = os.environ.get('DAGA_NO_SKIPS') == '1'
    if count['skipped'] and no_skips: print('DAGA_NO_SKIPS=1: a skipped notebook is a failure here.')
    print(f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped")
    sys.exit(1 if count['failed'] or (count['skipped'] and no_skips) else 0)


if __name__ == '__main__': main()
