"""`make check`: the nbdev house is consistent. Exits non-zero naming what to fix."""
import dataclasses, importlib, json, subprocess, sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[1]
bin_dir = Path(sys.executable).parent
problems = []

def tree_state():
    "A fingerprint of every tracked change and untracked file, so any rewrite by clean/export shows."
    diff = subprocess.run(['git', 'diff', 'HEAD', '--binary'], cwd=root, capture_output=True).stdout
    untracked = subprocess.run(['git', 'ls-files', '-o', '--exclude-standard'], cwd=root, capture_output=True, text=True).stdout.split()
    return diff + b''.join(f.encode() + (root / f).read_bytes() for f in sorted(untracked) if (root / f).is_file())

before = tree_state()
for cmd in ('nbdev_clean', 'nbdev_export'):
    r = subprocess.run([str(bin_dir / cmd)], cwd=root, capture_output=True, text=True)
    if r.returncode: problems.append(f'{cmd} failed:\n{r.stdout}{r.stderr}')
if tree_state() != before:
    changed = subprocess.run(['git', 'status', '--short'], cwd=root, capture_output=True, text=True).stdout
    problems.append('nbdev_clean / nbdev_export changed files: notebooks were not clean or daga/ was not in sync '
                    'with nbs/. Review `git diff` and commit the result.\n' + changed)

# every papermill front door: train_<task> and sweep (daga_train <task>), eval_<name> (daga_eval <name>)
for nb in sorted((root / 'nbs').glob('train_*.ipynb')) + sorted((root / 'nbs').glob('eval_*.ipynb')) + [root / 'nbs' / 'sweep.ipynb']:
    cells = json.loads(nb.read_text())['cells']
    tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
    if len(tagged) != 1:
        problems.append(f'{nb.relative_to(root)} has {len(tagged)} cells tagged "parameters" (papermill needs exactly one).')
        continue
    import papermill
    names = {l.split('=')[0].strip() for l in ''.join(tagged[0]['source']).splitlines() if '=' in l and not l.lstrip().startswith('#')}
    inferred = set(papermill.inspect_notebook(str(nb)))
    if names != inferred:
        problems.append(f'papermill cannot read parameter line(s) {sorted(names - inferred)} of {nb.relative_to(root)} '
                        f'(`papermill --help-notebook` would not list them): keep "=" out of their comments.')
    kind, name = nb.stem.split('_', 1) if '_' in nb.stem else ('train', nb.stem)
    try: params_cls = importlib.import_module('daga.cli').PROGRAMS[f'daga_{kind}'][name].params
    except (ImportError, KeyError) as e:
        problems.append(f'{nb.relative_to(root)} has no command in daga.cli.PROGRAMS (daga_{kind} {name}): {e!r}. Wire it in 39_cli.')
        continue
    fields = {f.name for f in dataclasses.fields(params_cls) if not f.name.startswith('_')}
    if names != fields:
        problems.append(f'{nb.relative_to(root)}: the parameters cell and {params_cls.__name__} disagree: missing '
                        f'{sorted(fields - names)}, unknown {sorted(names - fields)}. List every parameter, once.')

r = subprocess.run([sys.executable, str(root / 'tools' / 'make_readme.py'), '--check'], capture_output=True, text=True)
if r.returncode: problems.append(r.stderr.strip() or r.stdout.strip())

quarto = root / 'nbs' / '_quarto.yml'          # where nbdev_docs reads it; names relative to nbs/
try:
    site = yaml.safe_load(quarto.read_text())
except Exception as e:
    problems.append(f'_quarto.yml does not parse: {e}')
    site = {}
def named_files(node):
    if isinstance(node, dict): return [f for v in node.values() for f in named_files(v)]
    if isinstance(node, list): return [f for v in node for f in named_files(v)]
    return [node] if isinstance(node, str) and node.endswith('.ipynb') else []
names = named_files(site.get('website', {}))
if not names: problems.append('_quarto.yml names no notebooks in website.sidebar.')
for name in names:
    if not (root / 'nbs' / name).exists(): problems.append(f'nbs/_quarto.yml names {name}, which does not exist.')
for nb in sorted((root / 'nbs').glob('[0-9]*.ipynb')):
    if nb.name not in names: problems.append(f'nbs/{nb.name} is missing from the nbs/_quarto.yml sidebar.')

if problems:
    print('make check found problems:\n- ' + '\n- '.join(problems))
    sys.exit(1)
print('make check: notebooks clean, daga/ in sync, parameters cells present, _quarto.yml valid')
