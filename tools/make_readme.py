"""README.md from nbs/index.ipynb (what `nbdev_readme` does, without quarto): `python tools/make_readme.py [--check]`."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render() -> str:
    "Markdown cells as they are, code cells as python blocks; `#| hide` cells and directive lines left out."
    out = ['<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->']
    for cell in json.loads((root / 'nbs' / 'index.ipynb').read_text())['cells']:
        src = ''.join(cell['source']).strip('\n')
        lines = src.splitlines()
        if any(l.strip() == '#| hide' for l in lines): continue
        if cell['cell_type'] == 'markdown': out.append(src)
        elif cell['cell_type'] == 'code':
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if code: out.append(f'```python\n{code}\n```')
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text, readme = render(), root / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`.')
    else: readme.write_text(text)
