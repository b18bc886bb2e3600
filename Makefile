# lipspeech: the two commands.
#   make demo   run the whole pipeline on the built-in SynthGRID demo corpus (offline)
#   make test   lint the package (ruff) and the workflow (snakemake --lint), run the test suite
#               (and make test-slurm beside it: scripts/run-tests.sh)
#   make test-slurm  the pipeline on a throw-away local SLURM cluster vs a local run (root; 5-10 min)
# Both install what they need first: ffmpeg/espeak-ng (apt-get, as root) and a .venv
# with the locked Python dependencies (requirements.lock).

PYTHON ?= python3
VENV   ?= .venv
CORES  ?= $(shell nproc)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements-nodeps.lock pyproject.toml | cksum | cut -d' ' -f1)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-slurm deps venv lock dryrun clean-demo

# Ends with the corpus summary, the report's metrics table (the page: results/synthgrid/report.html) and the
# lipspeech serve line that serves the demo's model.
demo: deps venv
	$(BIN)/snakemake --cores $(CORES)
	@cat results/synthgrid/summary.txt
	@echo; awk '/^## Metrics/{on=1; next} /^## /{on=0} on' results/synthgrid/report.md
	@echo "report: results/synthgrid/report.html (audio players, mel and F0 plots), results/synthgrid/report.md"
	@echo "a page for the demo's model (clips; live needs a streaming model, configs/streaming.yaml):"
	@echo "$(BIN)/lipspeech serve --model results/synthgrid/models/ltbs/ckpt/best.pt --config config.yaml"

# The lints, then the suite with the SLURM test beside it (scripts/run-tests.sh: a throw-away local
# cluster; needs root to install and start it: as non-root without SLURM installed it is skipped
# with the reason; LIPSPEECH_SKIP_SLURM=1 skips it).
test: deps venv
	$(BIN)/ruff check lipspeech tests benchmarks
	$(BIN)/python scripts/conda_env.py --check
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --configfile workflow/lint/all-rules.yaml
	BIN=$(BIN) bash scripts/run-tests.sh

# Bring a single-node SLURM up on this machine (apt-get installs it when missing), run the
# tiny pipeline on it and locally, compare, tear the cluster down (also when the test fails).
# It writes nothing in the checkout (no bytecode either): make test runs it beside the suite,
# whose tests check that a run writes nothing outside results/.
test-slurm: deps venv
	bash scripts/slurm/up.sh
	LIPSPEECH_TEST_SLURM=1 PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider \
	  --basetemp=$${TMPDIR:-/tmp}/lipspeech-test-slurm tests/test_slurm.py; \
	  rc=$$?; bash scripts/slurm/down.sh; exit $$rc

deps:
	@bash scripts/install-system-deps.sh

venv: $(STAMP)

$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -r requirements.lock
	$(BIN)/python -m pip install -q --no-compile --no-deps -r requirements-nodeps.lock
	$(BIN)/python -m pip install -q --no-compile --no-deps -e .
	# The bytecode is compiled after the installs, on every core (pip compiles each wheel's files in
	# its one process: the lock's install took 67 s with it, 29 without, and this 25 on 2 cores).
	# It skips what does not compile for Python 3.11, as pip does (one test file of torch's).
	# Beside it, librosa compiles (numba) and caches some functions when the submodule that holds
	# them is first imported (lazily, not by `import librosa`), beside its own files: done here, at
	# install (16 s), rather than by the first pipeline stages, which wrote these caches twice at once
	# (the demo's two first ssl-features jobs took 15 and 20 s instead of 4.4). The three submodules
	# are the ones whose caches a make demo run wrote (*.nbi files newer than this stamp)
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib & \
	  $(BIN)/python -c "import librosa.core.audio, librosa.core.pitch, librosa.util.utils" || exit 1; \
	  wait
	rm -f $(VENV)/.installed-*
	touch $@

dryrun: venv
	$(BIN)/snakemake -n --cores $(CORES)

# Re-pin requirements.lock from a fresh environment of the package's own requirements.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q torch==2.13.0 && .venv-lock/bin/pip install -q -e '.[test]'
	{ echo "# Exact versions used by 'make' (pip install -r requirements.lock). Regenerate with 'make lock'."; \
	  echo "# torch is the CPU build (2.13.0); the package itself only requires torch>=2.4."; \
	  .venv-lock/bin/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock
	rm -rf .venv-lock
	$(PYTHON) scripts/conda_env.py

clean-demo:
	rm -rf results/synthgrid .snakemake
