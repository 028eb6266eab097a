# The README quickstart: make setup, dvc repro, make test.
PYTHON ?= python
# The exact versions CI passed with (pip constraints): `make setup` installs them, `make lock` rewrites them.
LOCK ?= requirements.lock

.PHONY: setup test bench lock
setup:  ## install torch (CPU-capable wheels from the local disk/PyPI) and medvit with its dev extra, pinned by $(LOCK)
	$(PYTHON) -m pip install -c $(LOCK) torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -c $(LOCK) -e ".[dev]"

test:   ## the whole test suite (CPU, a few minutes)
	$(PYTHON) -m pytest -q

bench:  ## every benchmark script, one table of figures and targets
	$(PYTHON) benchmarks/run_all.py

lock:   ## rewrite $(LOCK) from this environment; run after `pip install -U -e ".[dev]"` and a passing `make test`
	{ echo "# medvit: exact versions CI passed with (Python $$($(PYTHON) -c 'import platform; print(platform.python_version())')). Regenerate: make lock"; \
	  $(PYTHON) -m pip freeze --exclude-editable | grep -v -i '^medvit[= ]'; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
