# Two commands: `make demo` runs the whole chain offline-capable; `make test` runs lint and the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DATA := data/demo
# Real QuickDraw classes that the synthetic generator also draws, so the demo works online and offline.
DEMO_CLASSES := circle,diamond,hexagon,line,moon,octagon,square,star,triangle,zigzag
DEMO_ROWS := 2000

.PHONY: demo test lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	@# exit 3: the bucket cannot be reached at all (offline); exit 1: some classes failed, the others are kept
	$(PY) download_subset.py --categories "$(DEMO_CLASSES)" --max-per-class $(DEMO_ROWS) --out $(DEMO_DATA); rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "demo: the download could not start (above); using synthetic doodles instead"; \
	  $(PY) download_subset.py --synthetic --categories "$(DEMO_CLASSES)" --max-per-class $(DEMO_ROWS) --out $(DEMO_DATA); \
	elif [ $$rc -ne 0 ]; then echo "demo: some classes did not download (named above); run make demo again to resume"; \
	  exit $$rc; fi
	$(PY) get_dataset.py --data $(DEMO_DATA) --out $(DEMO_DATA)/split
	$(PY) train_cnn.py --split $(DEMO_DATA)/split --epochs 6 --batch-size 128 --out models --screenshots $(DEMO_DATA)/screenshots
	$(PY) load_model_predict.py samples/* --model-dir models

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) data/demo models .pytest_cache .ruff_cache .hypothesis
