# Two commands set everything up on a fresh machine:
#   make demo   - compare fine-tuning strategies on Fashion-MNIST with EfficientNet-Lite0
#   make test   - run the test suite (fast and slow tiers)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: venv data malloc browser demo test test-fast lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision first, pinned: these two releases install from the local wheel cache.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[export,dev]'
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (IDX files).
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] || [ -f $(FMNIST_DIR)/train-images-idx3-ubyte ]; then \
		echo "Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST not found and apt is unavailable: download the four IDX files"; \
		echo "(train/t10k images and labels) into a folder and pass FMNIST_DIR=that/folder."; \
		echo "Tests that need it will be skipped."; \
	fi

# tcmalloc (Debian's libtcmalloc-minimal4): the transferkit command preloads it when installed; CPU training steps
# measured up to 1.5x faster with it (BENCHMARKS.md, "Training-step speed"). Optional: without it nothing fails.
malloc:
	@if [ -f /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ] || [ -f /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 ]; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q libtcmalloc-minimal4 >/dev/null) || \
		echo "could not install libtcmalloc-minimal4; training runs with the system allocator"; \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get install -y -q libtcmalloc-minimal4 >/dev/null || echo "tcmalloc not installed; the system allocator is used"; \
	else \
		echo "tcmalloc not found (apt install libtcmalloc-minimal4): training runs with the system allocator"; \
	fi

# 28 px images at 64 px, 6 epochs: 2 min 48 s with auto on a quiet machine under tcmalloc (README, "The demo"). Pretrained
# layers learn at 5e-4 (the head at 10x); scratch keeps the default scratch rate, 1e-3 (2 x 5e-4).
demo: venv data malloc
	$(BIN)/transferkit compare --fashion-mnist $(FMNIST_DIR) --per-class 100 --test-limit 10000 \
		--backbone efficientnet_lite0 --strategies baseline,linear-probe,lp-ft,full,scratch,auto \
		--image-size 64 --epochs 6 --lr 5e-4 --scratch-lr-mult 2 --out runs/demo

# Headless Chromium renders the HTML report in a slow test (skipped when /usr/bin/chromium is absent).
browser:
	@if [ -x /usr/bin/chromium ]; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) || \
		echo "could not install chromium; the report rendering test will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get install -y -q chromium >/dev/null || echo "could not install chromium; its test will be skipped"; \
	else \
		echo "chromium not found and apt is unavailable: the report rendering test will be skipped"; \
	fi

test: venv data malloc browser
	TRANSFERKIT_FMNIST=$(FMNIST_DIR) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Benchmarks that print figures (BENCHMARKS.md); each takes minutes.
bench: venv data
	$(BIN)/python bench/speed.py --test-limit 2000 --plain-size 128
	$(BIN)/python bench/speed.py --skip a,plain --size 192
	$(BIN)/python bench/speed.py --rss

clean:
	rm -rf $(VENV) runs .pytest_cache
