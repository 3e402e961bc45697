"""`make test`: every notebook through nbdev's own notebook tester (`nbdev.test.test_nb`, what `nbdev_test` runs), in
parallel, then one closing line counted from what actually ran: `N passed, M failed, K skipped`.

What this adds to `nbdev_test`:
- A count. `nbdev_test` prints only "Success." or the failing names, so a count typed elsewhere could not fail. Here
  each notebook's result is its own: passed, failed, or skipped. A notebook that cannot run here (the browser tests
  without Chromium) says so by writing its reason to a file in `$DAGA_TEST_SKIPS`; with `DAGA_NO_SKIPS=1` (CI) a skip
  fails the run. Under `nbdev_test` there is no such folder, and a notebook that cannot run fails instead.
- Nothing left behind. Each notebook runs in a scratch copy of the repository's layout (the notebooks and top-level
  files linked, not copied) inside one temporary folder, which is also `TMPDIR`: run folders (`outputs/`), the
  browser screenshots and every `tempfile` land there, and the folder is removed at the end. On a failure it is kept
  and its path printed. Generated datasets go to daga's one dataset cache (`daga.synthetic.synthetic_cache`).
- Longest first. Two workers finish soonest when the longest notebooks start first (a long one started last runs on
  alone). The order comes from the last run's timings on this machine (`~/.cache/daga/test_times.json`), else from
  `tools/test_times.json` (measured on 2 cores; `--record` rewrites it); a notebook in neither starts first.
- A quiet terminal. Each notebook's output, and that of every process it starts (papermill kernels, distributed
  workers), goes to its own log in the temporary folder; the log's end is printed for a notebook that failed.
Options: --path GLOB (default: every notebook), --flags (nbdev test flags to run, e.g. slow), --n_workers, --record.
"""
import argparse, json, os, shutil, sys, tempfile, time
from pathlib import Path

from fastcore.parallel import parallel
from fastcore.xtras import working_directory
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file, test_nb


def scratch_layout(root: Path, scratch: Path) -> Path:
    "A folder like the repository (top-level entries linked) with its own nbs/ of linked notebooks; returns nbs/."
    nbs = scratch / 'nbs'
    nbs.mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name not in ('nbs', 'outputs', 'data', '.git') and not entry.name.startswith('.venv'):
            (scratch / entry.name).symlink_to(entry)
    for entry in (root / 'nbs').iterdir():
        if entry.name not in ('outputs', 'data'): (nbs / entry.name).symlink_to(entry)
    return nbs


def _test_logged(fn, log_dir, **kwargs):
    "test_nb(fn) with this process's stdout and stderr (file descriptors 1 and 2, inherited by children) sent to a log."
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(Path(log_dir) / f'{Path(fn).stem}.log', 'wb') as log:
        os.dup2(log.fileno(), 1); os.dup2(log.fileno(), 2)
        try: return test_nb(fn, **kwargs)
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            for fd in saved: os.close(fd)


RECORDED = Path(__file__).parent / 'test_times.json'
LOCAL = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'daga' / 'test_times.json'

def _times(path: Path) -> dict:
    "{notebook name: seconds} from a timings file, or {} when it is missing or unreadable."
    try: return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError): return {}

def longest_first(files: list) -> list:
    "files ordered by their last measured time, longest first; a notebook never timed goes first (it may be long)."
    times = {**_times(RECORDED), **_times(LOCAL)}
    return sorted(files, key=lambda f: -times.get(f.name, float('inf')))

def save_times(outcome: dict, path: Path):
    "Merge this run's timings of passed notebooks into `path` (written to a temporary file, then renamed)."
    passed = {name: round(seconds, 1) for name, (status, seconds, _) in outcome.items() if status == 'passed'}
    times = {**_times(path), **passed}           # a failed notebook's time says how far it got, not how long it runs
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(dict(sorted(times.items())), indent=1) + '\n')
    tmp.replace(path)


def run(path=None, flags='', n_workers=2, scratch=None):
    "{notebook: ('passed'|'failed'|'skipped', seconds, reason)} for every notebook matching `path`, run in `scratch`."
    cfg = get_config()
    files = longest_first([f.absolute() for f in sorted(nbglob(path, as_path=True)) if _keep_file(f, '.notest')])
    if not files: sys.exit(f'no notebooks match {path!r}')
    scratch = Path(scratch or tempfile.mkdtemp(prefix='daga-test-'))
    nbs, skips, logs = scratch_layout(cfg.config_path, scratch / 'repo'), scratch / 'skips', scratch / 'logs'
    skips.mkdir(); logs.mkdir(); (scratch / 'tmp').mkdir()
    os.environ.update(DAGA_TEST_SKIPS=str(skips), TMPDIR=str(scratch / 'tmp'))   # workers and children inherit
    tempfile.tempdir = None                                                        # re-read TMPDIR here and in workers
    linked = [nbs / f.name for f in files]
    import run_tests        # by module name: a notebook's shell replaces a worker's __main__, where this script lives
    with working_directory(nbs):
        results = parallel(run_tests._test_logged, linked, log_dir=logs, skip_flags=cfg.tst_flags.split(),
                           force_flags=flags.split(), n_workers=min(n_workers, len(files)), basepath=cfg.config_path,
                           pause=0.01)
    outcome = {}
    for f, (passed, seconds) in zip(files, results):
        skip = skips / f.name
        status = 'failed' if not passed else 'skipped' if skip.exists() else 'passed'
        outcome[f.name] = (status, seconds, skip.read_text().strip() if skip.exists() else '')
    return outcome, scratch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--path', default=None)
    ap.add_argument('--flags', default='')
    ap.add_argument('--n_workers', type=int, default=2)
    ap.add_argument('--record', action='store_true', help='also write the timings to tools/test_times.json')
    args = ap.parse_args(argv)
    os.environ.setdefault('TQDM_DISABLE', '1')      # progress bars of tqdm's defaults (papermill's among them): off
    t0 = time.time()
    outcome, scratch = run(args.path, args.flags, args.n_workers)
    for target in [LOCAL] + ([RECORDED] if args.record else []):
        try: save_times(outcome, target)
        except OSError as e: print(f'timings not saved to {target}: {e}')
    for name, (status, _, _) in sorted(outcome.items()):
        if status == 'failed':
            lines = (scratch / 'logs' / f'{Path(name).stem}.log').read_text(errors='replace').splitlines()
            print(f'\n===== {name} failed; the end of its log:\n' + '\n'.join(lines[-60:]))
    print(f'\n{len(outcome)} notebooks in {time.time() - t0:.0f} s:')
    for name, (status, seconds, reason) in sorted(outcome.items(), key=lambda kv: -kv[1][1]):
        print(f'  {status:<8} {seconds:5.0f} s  {name}' + (f'  ({reason})' if reason else ''))
    count = {s: sum(o[0] == s for o in outcome.values()) for s in ('passed', 'failed', 'skipped')}
    no_skips = os.environ.get('DAGA_NO_SKIPS') == '1'
    if count['skipped'] and no_skips: print('DAGA_NO_SKIPS=1: a skipped notebook is a failure here.')
    if count['failed']: print(f'The run folder (logs/, the run folders and temporary files) is kept: {scratch}')
    else: shutil.rmtree(scratch, ignore_errors=True)
    print(f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped")
    sys.exit(1 if count['failed'] or (count['skipped'] and no_skips) else 0)


if __name__ == '__main__': main()
