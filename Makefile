# The README quickstart: make setup, dvc repro, make test.
PYTHON ?= python

.PHONY: setup test bench
setup:  ## install torch (CPU-capable wheels from the local disk/PyPI) and medvit with its dev extra
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev]"

test:   ## the whole test suite (CPU, a few minutes)
	$(PYTHON) -m pytest -q

bench:  ## every benchmark script, one table of figures and targets
	$(PYTHON) benchmarks/run_all.py
