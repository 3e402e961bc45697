# Two commands on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
# 2 cores: one BLAS thread per notebook worker, two notebooks at a time.
TEST_ENV = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg

.PHONY: install test check demo bench readme docs clean

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools' build warnings (its "Editable installation" banner) are UserWarnings: not shown at install
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# papermill kernels: no "running over TCP without encryption" warning at every start (the kernel logs errors only)
	$(BIN)/python -c "import json, sys; p = sys.prefix + '/share/jupyter/kernels/python3/kernel.json'; \
	k = json.load(open(p)); k['argv'] += [a for a in ['--IPKernelApp.log_level=ERROR'] if a not in k['argv']]; \
	json.dump(k, open(p, 'w'), indent=1)"
	touch $(STAMP)

install: $(STAMP)

## Project consistency: notebooks clean, library in sync, papermill `parameters` cells present, _quarto.yml valid.
check: install
	$(BIN)/python tools/check_project.py

## The whole test suite: every notebook through nbdev's notebook tester (slow cells too: CI runs everything that can
## break), ending with `N passed, M failed, K skipped` counted from what ran (tools/run_tests.py).
test: check
	$(TEST_ENV) PATH=$(abspath $(BIN)):$$PATH $(BIN)/python tools/run_tests.py --n_workers 2 --flags slow

## The headline run: baseline and DAGA side by side on generated ADE20K-format data, as a researcher would with papermill.
demo: install
	mkdir -p outputs
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/papermill --cwd . nbs/train_segmentation.ipynb outputs/demo_segmentation.ipynb
	@echo "Demo finished. The executed notebook: outputs/demo_segmentation.ipynb"
	@echo "The run folder (comparison.md, curves.png, per_class_iou.png, predictions.png; baseline/ and daga/ with"
	@echo "config.json, metrics.jsonl, last.pt, summary.json and the per-class reports of the test split):"
	@ls -td outputs/segmentation/*/ | head -1
	@echo; cat "$$(ls -td outputs/segmentation/*/ | head -1)comparison.md"

## The documentation site in _docs/: every notebook run and rendered (mkdocs-material), the sidebar of nbs/_quarto.yml.
## Open _docs/index.html, or serve it: $(BIN)/python -m http.server -d _docs 8000.
## `make docs DOCS_ARGS=--fast` skips slow cells; DOCS_ARGS=--path=index.ipynb,21_knn.ipynb renders a few pages.
docs: install
	$(TEST_ENV) PATH=$(abspath $(BIN)):$$PATH $(BIN)/python tools/build_docs.py $(DOCS_ARGS)

## Everything the project made: run folders, generated data, the docs and their build, caches. Not the .venv.
clean:
	rm -rf outputs nbs/outputs data nbs/data _docs _proc .cache out.ipynb nbs/out.ipynb nbs/nbdev.yml
	rm -rf "$${DAGA_DATA_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/daga/synthetic}"
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints -o -name '*.egg-info' \) \
		-type d -print0 | xargs -0 rm -rf

## README.md is generated from nbs/index.ipynb.
readme:
	python3 tools/make_readme.py

bench: install
	$(BIN)/python bench/step_time.py --task all

## The first GPU run, prepared (bench/gpu_check.py): bf16 steps at real sizes per task, bf16 vs fp32, DDP over NCCL,
## SyncBatchNorm, gradient checkpointing and torch.compile, in one table within 8 minutes on one GPU. Without a GPU it
## runs its tiny CPU form (which `make test` runs too, through nbs/41_gpu_check.ipynb).
.PHONY: gpu-check
gpu-check: install
	$(BIN)/python bench/gpu_check.py
