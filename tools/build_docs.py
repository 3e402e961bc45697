"""`make docs`: the notebooks as a documentation site in `_docs/`, without quarto.

1. Execute: each notebook runs as `make test` runs it (nbdev's test flags, slow cells included, in a scratch copy of
   the repository's layout, output to a log), after nbdev's `add_show_docs` has put a `show_doc` cell under every
   exported definition, so one run gives the figures and the API. Executed notebooks are cached in
   `_proc/docs/executed/`, keyed by the notebook and the library's sources: an unchanged notebook is not run again.
2. Process: nbdev's own documentation processors (`nbdev.processors.FilterDefaults`, the ones `nbdev_docs` applies
   before quarto) hide `#| hide` cells, drop exported sources (their `show_doc` stays), clean directives and link
   backticked names; the doc links to `doc_host` become links inside the site.
3. Render: mkdocs-material with mkdocs-jupyter, the sidebar of `nbs/_quarto.yml` as its navigation, pages named as
   nbdev names them (`00_backbone.ipynb` -> `backbone.html`, where the library's doc links point).
4. Check: every internal link and image of the site resolves (a page, a file, an anchor on the page).

Options: --path NAMES (comma-separated notebook names, e.g. index.ipynb,11_segmentation.ipynb: a subset, for a quick
look or a test), --out FOLDER (default `_docs`), --n_workers, --fast (skip `slow` cells), --no-exec (no outputs).
With quarto installed, `nbdev_docs` renders the same notebooks through nbdev's own pipeline from `nbs/_quarto.yml`.
"""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, tempfile, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from execnb.nbio import read_nb, write_nb
from fastcore.parallel import parallel
from nbdev.config import get_config
from nbdev.doclinks import _nbpath2html
from nbdev.process import NBProcessor
from nbdev.processors import FilterDefaults, add_show_docs, exec_show_docs

sys.path.insert(0, str(Path(__file__).parent))
from run_tests import scratch_layout  # noqa: E402  (the scratch copy of the repository make test runs in)

ROOT = Path(__file__).resolve().parents[1]
SITE_CONFIG = ROOT / 'nbs' / '_quarto.yml'


def site_notebooks() -> list:
    "(section or None, notebook name) in the order of nbs/_quarto.yml's sidebar."
    out = []
    def walk(node, section):
        for item in node:
            if isinstance(item, str): out.append((section, Path(item).name))
            elif isinstance(item, dict): walk(item.get('contents', []), item.get('section', section))
    walk(yaml.safe_load(SITE_CONFIG.read_text())['website']['sidebar']['contents'], None)
    return out


def page_name(notebook: str) -> str:
    "The page a notebook becomes, as nbdev names it: '00_backbone.ipynb' -> 'backbone.html'."
    return _nbpath2html(Path(notebook)).name


def _library_hash() -> str:
    digest = hashlib.sha256()
    for f in sorted((ROOT / 'daga').rglob('*.py')): digest.update(f.read_bytes())
    return digest.hexdigest()


def _execute(job) -> tuple:
    "Run one notebook (with show_doc cells added) in the scratch layout; write it executed. (name, ok, seconds)."
    src, dst, nbs, log_dir, skip_flags, force_flags, key = job
    from execnb.shell import CaptureShell
    from fastcore.basics import str2bool
    from fastcore.xtras import working_directory
    os.environ['IN_TEST'] = '1'
    nb = read_nb(src)
    NBProcessor(nb=nb, procs=[add_show_docs], rm_directives=False).process()   # keep the directives: step 2 reads them
    flags = set(skip_flags) - set(force_flags)
    def skip(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        directives = getattr(cell, 'directives_', {}) or {}
        if directives.get('eval:', [''])[0].lower() == 'false': return True
        return bool(flags & directives.keys())
    t0 = time.time()
    shell = CaptureShell(nbs / src.name)
    shell.run_cell('%matplotlib inline')                    # figures as PNG outputs, whatever MPLBACKEND says
    shell.run_cell('from nbdev.showdoc import show_doc')
    log = open(Path(log_dir) / f'{src.stem}.log', 'w')
    ok = True
    try:
        with working_directory(nbs):
            shell.run_all(nb, exc_stop=True, preproc=skip)
    except Exception:
        log.write(shell.prettytb(fname=src)); ok = False
    finally: log.close()
    nb.metadata['daga_docs'] = {'key': key, 'ok': ok}
    write_nb(nb, dst)
    return src.name, ok, time.time() - t0


def execute(names, cache: Path, n_workers: int, fast: bool, run_code: bool) -> dict:
    "Executed copies of the notebooks in `cache`; {name: ok}. Unchanged notebooks are reused."
    cfg = get_config()
    cache.mkdir(parents=True, exist_ok=True)
    library, jobs, status = _library_hash(), [], {}
    scratch = Path(tempfile.mkdtemp(prefix='daga-docs-'))
    nbs = scratch_layout(ROOT, scratch / 'repo')
    (scratch / 'logs').mkdir(); (scratch / 'tmp').mkdir()
    for name in names:
        src, dst = ROOT / 'nbs' / name, cache / name
        key = hashlib.sha256(src.read_bytes() + library.encode() + Path(__file__).read_bytes()
                             + str((fast, run_code)).encode()).hexdigest()
        if not run_code:
            nb = read_nb(src); nb.metadata['daga_docs'] = {'key': key, 'ok': True}
            NBProcessor(nb=nb, procs=[add_show_docs], rm_directives=False).process()
            write_nb(nb, dst); status[name] = True
        elif dst.exists() and json.loads(dst.read_text()).get('metadata', {}).get('daga_docs', {}).get('key') == key:
            status[name] = json.loads(dst.read_text())['metadata']['daga_docs']['ok']
        else:
            jobs.append((src, dst, nbs, scratch / 'logs', cfg.tst_flags.split(), [] if fast else ['slow'], key))
    env = dict(TMPDIR=str(scratch / 'tmp'), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', TQDM_DISABLE='1',
               DAGA_TEST_SKIPS=str(scratch / 'tmp'))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env); tempfile.tempdir = None
    try:
        import build_docs   # by module name: a notebook's shell replaces a worker's __main__, where this script lives
        workers = min(n_workers, len(jobs)) if jobs else 0
        for name, ok, seconds in parallel(build_docs._execute, jobs, n_workers=workers, pause=0.01):
            status[name] = ok
            log = scratch / 'logs' / f'{Path(name).stem}.log'
            print(f'  executed {name} in {seconds:.0f} s' + ('' if ok else f' (FAILED: the page stops there; {log})'))
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
        tempfile.tempdir = None
    if all(status.values()): shutil.rmtree(scratch, ignore_errors=True)
    return status


class _DocProcs(FilterDefaults):
    "nbdev's documentation processors but the two that run code: the show_doc cells ran with the notebook."
    def base_procs(self): return [p for p in super().base_procs() if p not in (add_show_docs, exec_show_docs)]


_DIRECTIVE = re.compile(r'^\s*#\|.*$\n?', re.MULTILINE)
_QUARTO_ATTRS = re.compile(r'\)\{[^}\n]*\}')                 # [source](url){target="_blank" ...}: quarto's attributes
_API_HEADING = re.compile(r'^(#+) (\S+)$', re.MULTILINE)


def _frontmatter_cell(cell) -> str:
    "nbdev's raw frontmatter cell (title, description) as the page's markdown title."
    meta = yaml.safe_load(cell.source.strip().strip('-')) or {}
    return f"# {meta.get('title', '')}\n\n> {meta.get('description', '')}".rstrip('> \n')


def _api_markdown(text: str) -> str:
    "A show_doc output for mkdocs: no quarto attributes, and the anchor nbdev's doc links use (the name, lower case)."
    text = _QUARTO_ATTRS.sub(')', text)
    return _API_HEADING.sub(lambda m: f'<a id="{m[2].lower()}"></a>\n\n{m[1]} {m[2]}', text)


def process(executed: Path, pages: Path, doc_prefix: str):
    "An executed notebook -> the page's notebook: nbdev's processors, then what mkdocs-jupyter needs."
    nb = read_nb(executed)
    _DocProcs()(nb)
    cells = []
    for cell in nb.cells:
        source = cell.get('source', None)
        if source is None: continue                                   # hidden or exported: nbdev removed its source
        if cell.cell_type == 'raw' and source.startswith('---'):
            cell.cell_type, cell.source, source = 'markdown', _frontmatter_cell(cell), _frontmatter_cell(cell)
            cell.pop('outputs', None); cell.pop('execution_count', None)
        for output in cell.get('outputs', []):
            markdown = output.get('data', {}).get('text/markdown')
            if markdown is not None:
                text = _api_markdown(''.join(markdown) if isinstance(markdown, list) else markdown)
                output['data']['text/markdown'] = text
                output['data'].pop('text/plain', None)
        directives = getattr(cell, 'directives_', {}) or {}
        if cell.cell_type == 'code':
            if directives.get('echo:', [''])[0] == 'false': cell.metadata.setdefault('tags', []).append('remove_input')
            cell.source = _DIRECTIVE.sub('', source)
            if not cell.source.strip() and not cell.get('outputs'): continue
        if cell.cell_type == 'markdown' and source.strip() in ('', ':::') or source.startswith('::: {'): continue
        cells.append(cell)
    nb.cells = cells
    text = json.dumps(nb, default=dict)
    text = text.replace(doc_prefix, '')                              # nbdev's doc links, into links inside the site
    out = pages / Path(page_name(executed.name)).with_suffix('.ipynb')
    out.write_text(text)
    return out


def mkdocs_config(pages: Path, site: Path, names) -> Path:
    "mkdocs.yml for the pages: material theme, mkdocs-jupyter, navigation = the sidebar of nbs/_quarto.yml."
    site_cfg = yaml.safe_load(SITE_CONFIG.read_text())['website']
    nav, sections = [], {}
    for section, name in site_notebooks():
        if name not in names: continue
        entry = Path(page_name(name)).with_suffix('.ipynb').name
        if section is None: nav.append(entry)
        else:
            if section not in sections: sections[section] = []; nav.append({section: sections[section]})
            sections[section].append(entry)
    cfg = {'site_name': site_cfg.get('title', 'daga'), 'site_description': site_cfg.get('description', ''),
           'repo_url': site_cfg.get('repo-url'), 'docs_dir': str(pages), 'site_dir': str(site),
           'use_directory_urls': False,
           'theme': {'name': 'material', 'features': ['navigation.sections', 'navigation.top', 'search.highlight']},
           'plugins': ['search', {'mkdocs-jupyter': {
               'include_source': True, 'execute': False, 'ignore_h1_titles': False,
               'remove_tag_config': {'remove_input_tags': ['remove_input']}}}],
           'nav': nav}
    path = pages.parent / 'mkdocs.yml'
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class _Links(HTMLParser):
    "The ids, hrefs and image sources of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.hrefs, self.images = set(), [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.hrefs.append(a['href'])
        if tag == 'img' and a.get('src'): self.images.append(a['src'])


def broken_links(site: Path, elsewhere=()) -> list:
    "'page: link' for each internal link or image that leads nowhere; links to pages `elsewhere` (not built) are fine."
    pages = {}
    for f in site.rglob('*.html'):
        if f.name == '404.html': continue                              # served at any address: its links are absolute
        parser = _Links(); parser.feed(f.read_text(errors='replace')); pages[f] = parser
    broken = []
    for f, parser in pages.items():
        for link in parser.hrefs + parser.images:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(('data:', 'mailto:', 'javascript:')): continue
            target = (f.parent / unquote(parts.path)).resolve() if parts.path else f
            if target.is_dir(): target = target / 'index.html'
            if target.parent == site.resolve() and target.name in elsewhere: continue
            if not target.exists(): broken.append(f'{f.relative_to(site)}: {link}'); continue
            if parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f'{f.relative_to(site)}: {link} (no such anchor)')
    return sorted(broken)


def build(names=None, out=None, n_workers=2, fast=False, run_code=True, work=None) -> Path:
    "Execute, process, render and check; returns the site folder. `work`: the build folder (default _proc/docs)."
    cfg = get_config()
    known = [name for _, name in site_notebooks()]
    names = known if names is None else names
    unknown = [n for n in names if n not in known]
    if unknown: sys.exit(f'{unknown} are not in the sidebar of {SITE_CONFIG.relative_to(ROOT)}: add them there first.')
    work = Path(work or ROOT / '_proc' / 'docs').resolve()
    site = Path(out or ROOT / cfg.doc_path).resolve()
    t0 = time.time()
    status = execute(names, work / 'executed', n_workers, fast, run_code)
    pages = work / 'pages'
    shutil.rmtree(pages, ignore_errors=True); pages.mkdir(parents=True)
    doc_prefix = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'
    for name in names: process(work / 'executed' / name, pages, doc_prefix)
    config = mkdocs_config(pages, site, names)
    t1 = time.time()
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '--quiet', '-f', str(config)],
                       capture_output=True, text=True, cwd=work,        # mkdocs-jupyter caches in ./.cache: in `work`
                       env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    if r.returncode: sys.exit(f'mkdocs failed:\n{r.stdout}{r.stderr}')
    broken = broken_links(site, {page_name(n) for n in known if n not in names})
    print(f'{len(names)} pages in {site} (executed in {t1 - t0:.0f} s, rendered in {time.time() - t1:.0f} s)')
    failed = [n for n, ok in status.items() if not ok]
    if failed: print(f'these notebooks failed while executing, their pages stop at the error: {failed}')
    if broken: sys.exit('broken links:\n  ' + '\n  '.join(broken))
    return site


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--path', default=None, help='comma-separated notebook names (default: the whole sidebar)')
    ap.add_argument('--out', default=None)
    ap.add_argument('--n_workers', type=int, default=2)
    ap.add_argument('--fast', action='store_true', help='skip the cells flagged slow')
    ap.add_argument('--no-exec', dest='run_code', action='store_false', help='render the sources without running them')
    ap.add_argument('--work', default=None, help='build folder (executed notebooks, pages); default _proc/docs')
    args = ap.parse_args(argv)
    names = None if args.path is None else [Path(n).name for n in args.path.split(',') if n]
    build(names, args.out, args.n_workers, args.fast, args.run_code, args.work)


if __name__ == '__main__': main()
