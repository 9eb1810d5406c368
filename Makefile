# Set-up, demo and tests. Everything installs into $(VENV) from setup.py.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines get mmcv-lite; use MMCV_FLAVOUR=full where mmcv is compiled.
MMCV_FLAVOUR ?= lite
DEMO_CONFIG ?= configs/segvit/segvit_vit-t8_1xb8-500iter_shapes-128x128.py
DEMO_DIR ?= work_dirs/segvit_demo
DEMO_DATA ?= data/segvit_shapes
SHRUNK_DEMO_CONFIG ?= configs/segvit/segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128.py
SHRUNK_DEMO_DIR ?= work_dirs/segvit_demo_shrunk

# What `make lint` checks and `make format` rewrites.
LINT_PATHS ?= mmseg_segvit tests tools benchmarks configs setup.py

.PHONY: install lint format demo demo-shrunk test clean

$(BIN)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[$(MMCV_FLAVOUR),tests,lint]"
	touch $@

install: $(BIN)/.installed

# Train + test SegViT on the embedded dataset through mim, then draw
# image | ground truth | prediction for a few validation images (with a
# class legend), the prediction and ATM masks (top-k classes, per stage) of
# one image, and the training loss with the terms it sums (every output's).
demo: install
	$(BIN)/python -m mmseg_segvit.tools.make_demo_data $(DEMO_DATA)
	$(BIN)/mim train mmsegmentation $(DEMO_CONFIG) --work-dir $(DEMO_DIR)
	$(BIN)/mim test mmsegmentation $(DEMO_CONFIG) \
		--checkpoint "$$(cat $(DEMO_DIR)/last_checkpoint)" \
		--work-dir $(DEMO_DIR)/test
	$(BIN)/python -m mmseg_segvit.tools.visualize_demo $(DEMO_CONFIG) \
		"$$(cat $(DEMO_DIR)/last_checkpoint)" $(DEMO_DIR)/demo.png
	$(BIN)/python -m mmseg_segvit.tools.atm_masks $(DEMO_CONFIG) \
		"$$(cat $(DEMO_DIR)/last_checkpoint)" \
		$(DEMO_DATA)/img_dir/val/00000.png $(DEMO_DIR)/atm_masks --topk 4
	$(BIN)/python -m mmseg_segvit.tools.plot_losses \
		"$$(ls -t $(DEMO_DIR)/*/vis_data/scalars.json | head -1)" \
		$(DEMO_DIR)/loss.png

# The Shrunk demo: its ViT starts from the plain demo's trained backbone
# (as the paper's Shrunk models start from a pretrained ViT), so `make demo`
# runs first if its checkpoint is missing. Then mim train + mim test and
# the same picture as the plain demo.
demo-shrunk: install
	test -s $(DEMO_DIR)/last_checkpoint || $(MAKE) demo
	$(BIN)/mim train mmsegmentation $(SHRUNK_DEMO_CONFIG) \
		--work-dir $(SHRUNK_DEMO_DIR) \
		--cfg-options model.backbone.init_cfg.checkpoint="$$(cat $(DEMO_DIR)/last_checkpoint)"
	$(BIN)/mim test mmsegmentation $(SHRUNK_DEMO_CONFIG) \
		--checkpoint "$$(cat $(SHRUNK_DEMO_DIR)/last_checkpoint)" \
		--work-dir $(SHRUNK_DEMO_DIR)/test
	$(BIN)/python -m mmseg_segvit.tools.visualize_demo $(SHRUNK_DEMO_CONFIG) \
		"$$(cat $(SHRUNK_DEMO_DIR)/last_checkpoint)" $(SHRUNK_DEMO_DIR)/demo.png

# MMSegmentation's code style (settings in setup.cfg): flake8, isort, yapf
# and docformatter check the tree; `make format` applies the last three.
lint: install
	$(BIN)/flake8 $(LINT_PATHS)
	$(BIN)/isort --check-only --diff $(LINT_PATHS)
	$(BIN)/yapf --recursive --diff $(LINT_PATHS)
	$(BIN)/docformatter --recursive --check --wrap-descriptions 79 $(LINT_PATHS)

format: install
	$(BIN)/isort $(LINT_PATHS)
	$(BIN)/yapf --recursive --in-place $(LINT_PATHS)
	$(BIN)/docformatter --recursive --in-place --wrap-descriptions 79 $(LINT_PATHS)

# The linters first, then the whole suite (slow end-to-end runs included).
test: install lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO_DIR) $(SHRUNK_DEMO_DIR) .pytest_cache
