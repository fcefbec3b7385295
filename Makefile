# Two commands do everything on a fresh machine:  make book   and   make test.
# Both create .venv on first use and install the pinned dependencies into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Installed state is keyed on the lock file and pyproject: change either and the next
# command reinstalls.
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
# The book's execution cache must be thrown away when the code it imports changes:
# jupyter-cache only notices changes to the notebooks themselves.
SRC_HASH = $(shell cat requirements.lock pyproject.toml $$(find src -name '*.py' | sort) | sha256sum | cut -c1-16)
# --all: every page is read again, so a warning cannot hide behind Sphinx's saved environment
# (after a failed strict build the next one otherwise re-reads only changed pages and passes).
JB_FLAGS := -W -n --keep-going --all
NBVAL    := --nbval --nbval-current-env --nbval-sanitize-with nbval-sanitize.cfg \
            -p no:cacheprovider -p nbval_reference -n 2 --dist loadfile
# Every chapter runs with CPU-dependent knobs changed (--cpu-knobs: lower MKL/oneDNN
# instruction sets, other thread variables, glibc hwcaps; normlab.reference_numerics.KNOBS):
# its outputs must still be byte-identical to the stored ones. One session for all chapters
# keeps both pytest workers busy to the end.
KERNEL := $(VENV)/share/jupyter/kernels/python3/kernel.json
# The repository the book's buttons point at: a build setting, no default (README, "Buttons").
# `make book REPO_URL=https://github.com/OWNER/REPO` or REPO_URL in the environment; without
# it the book has no repository, issues or launch buttons. tools/book_config.py writes the
# config every build uses into _build/ from _config.yml.
REPO_URL    ?=
REPO_BRANCH ?= main
BOOK_CONFIG  = $(BIN)/python tools/book_config.py --repo-url "$(REPO_URL)" --branch "$(REPO_BRANCH)"
# `make pdf`: the PDF lands in $(PDF_ROOT)/_build/latex/ (tests/test_pdf.py builds into a
# temporary PDF_ROOT). latex/ holds a stand-in bbm.sty (see latex/bbm.sty).
PDF_ROOT    ?= .
TEX_PACKAGES := texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
                texlive-xetex latexmk fonts-freefont-otf poppler-utils

export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
# The reference numerics (src/normlab/reference_numerics.py): PyTorch's AVX2 kernels and MKL's
# reproducible code path, read once when torch runs its first operation, so they must be in the
# environment of every process that executes a chapter. tests/test_reference_numerics.py
# checks that these match normlab.reference_numerics.ENV.
export ATEN_CPU_CAPABILITY := avx2
export MKL_CBWR := COMPATIBLE
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Prints how long a phase took: $(call timed,name,command)
define timed
	@start=$$(date +%s); echo "==> $(1)"; $(2) || exit $$?; \
	echo "[time] $(1): $$(( $$(date +%s) - start )) s"
endef

.PHONY: help install book pdf test test-lib test-notebooks test-book execute lab lock bench clean

help:
	@echo "make book     build the HTML book into _build/html (sets up .venv on first use)"
	@echo "              REPO_URL=https://github.com/OWNER/REPO adds repository/issues/launch buttons"
	@echo "make pdf      the whole book as one PDF in _build/latex/ (needs TeX: see README)"
	@echo "make test     library tests, strict nbval over chapters/, strict book build"
	@echo "make execute  re-execute every chapter in place (regenerates stored outputs)"
	@echo "make lab      JupyterLab in the course environment"
	@echo "make bench    normlab vs torch.nn.functional speed table"

install: $(STAMP) $(KERNEL)

# The course's Jupyter kernel carries the reference numerics itself, so a kernel started by
# `.venv/bin/jupyter lab` (not through make) computes the book's numbers too.
$(KERNEL): $(STAMP) Makefile
	@$(BIN)/python -m ipykernel install --sys-prefix --name python3 \
	  --display-name "Python 3 (normlab course)" \
	  --env ATEN_CPU_CAPABILITY $(ATEN_CPU_CAPABILITY) --env MKL_CBWR $(MKL_CBWR) >/dev/null

$(STAMP): requirements.lock pyproject.toml
	$(call timed,install,\
	  { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
	  $(BIN)/python -m pip install -q --upgrade pip && \
	  $(BIN)/python -m pip install -q torch==2.13.0 && \
	  $(BIN)/python -m pip install -q -r requirements.lock && \
	  $(BIN)/python -m pip install -q --no-deps -e . && \
	  rm -f $(VENV)/.installed-* && touch $@)

book: install
	$(call timed,book build (strict),\
	  mkdir -p _build && \
	  { [ "$$(cat _build/.src-hash 2>/dev/null)" = "$(SRC_HASH)" ] || rm -rf _build/.jupyter_cache; } && \
	  $(BOOK_CONFIG) --out _build/_config.book.yml && \
	  $(BIN)/jupyter-book build . $(JB_FLAGS) --config _build/_config.book.yml && \
	  echo "$(SRC_HASH)" > _build/.src-hash)
	@test -f _build/html/index.html && echo "Book: $(abspath _build/html/index.html)"

test-lib: install
	$(call timed,pytest tests/,$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile tests)

test-notebooks: install
	$(call timed,nbval chapters/ (strict; CPU knobs changed),\
	  PYTHONPATH=tests $(BIN)/python -m pytest $(NBVAL) --cpu-knobs chapters)

# In `make test` the book is built from the stored outputs, which strict nbval has just
# proved equal to a fresh execution: each chapter is executed once per test run. (`make book`
# executes, with its cache.) The build is as strict as `make book`'s otherwise.
test-book: install
	$(call timed,book build (strict; the outputs nbval just verified),\
	  $(BOOK_CONFIG) --execute off --out _build/_config.stored-outputs.yml && \
	  $(BIN)/jupyter-book build . $(JB_FLAGS) --config _build/_config.stored-outputs.yml && \
	  $(BOOK_CONFIG) --check-html _build/html)

# The PDF edition: Jupyter Book's LaTeX builder (xelatex), from the outputs stored in the
# notebooks (those strict nbval verifies), with the book's strict flags. latexmk remembers a
# failed run, so the LaTeX folder is rebuilt from scratch each time.
pdf: install
	@missing=""; for t in xelatex latexmk; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	  { ! command -v fc-list >/dev/null || fc-list | grep -i FreeSerif >/dev/null; } || \
	    missing="$$missing FreeSerif-font"; \
	  if [ -n "$$missing" ]; then \
	    echo "make pdf needs TeX (missing:$$missing). On Debian/Ubuntu install it with:"; \
	    echo "  sudo apt-get install --no-install-recommends $(TEX_PACKAGES)"; exit 1; fi
	$(call timed,pdf (LaTeX; the stored outputs),\
	  rm -rf $(PDF_ROOT)/_build/latex && mkdir -p $(PDF_ROOT)/_build && \
	  $(BOOK_CONFIG) --execute off --out $(PDF_ROOT)/_build/_config.pdf.yml && \
	  TEXINPUTS="$(abspath latex):$$TEXINPUTS" $(BIN)/jupyter-book build . --builder pdflatex \
	    $(JB_FLAGS) --config $(PDF_ROOT)/_build/_config.pdf.yml --path-output $(PDF_ROOT) \
	    > $(PDF_ROOT)/_build/pdf.log 2>&1 || { tail -40 $(PDF_ROOT)/_build/pdf.log; exit 1; })
	@ls $(PDF_ROOT)/_build/latex/*.pdf && echo "(full log: $(PDF_ROOT)/_build/pdf.log)"

test: install
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-lib && \
	$(MAKE) --no-print-directory test-notebooks && \
	$(MAKE) --no-print-directory test-book || exit $$?; \
	echo "[time] make test total: $$(( $$(date +%s) - start )) s"

execute: install
	$(call timed,execute chapters in place,\
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=300 --ExecutePreprocessor.kernel_name=python3 \
	    chapters/*.ipynb)

lab: install
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || \
	  $(BIN)/python -m pip install -q jupyterlab==4.6.6
	$(BIN)/jupyter lab chapters/

# Speed is measured on the machine's own fastest code paths, not under the reference pin.
bench: install
	env -u ATEN_CPU_CAPABILITY -u MKL_CBWR $(BIN)/python benchmarks/bench_norms.py

lock: install
	@{ echo "# Exact versions of everything the course installs (Python 3.11, CPU only)."; \
	   echo "# Regenerate with 'make lock' after changing dependencies. torch is installed first, on its own."; \
	   echo "torch==2.13.0"; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -viE '^(torch==|normlab)'; } > requirements.lock

clean:
	rm -rf _build .pytest_cache .hypothesis
