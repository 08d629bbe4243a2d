# Our own environment without a system ROS (see README): `make test`, `make demo`.
# Every target sets up what it needs first; setup is idempotent and takes seconds once done.
# `make test` is what CI runs (ci/ci.sh): the requirements and Python 3.10 checks, the whole suite, the model
# tests under the oldest transformers and the ROS tests under ROS 2 Jazzy. `make test TESTS=...` runs only
# those tests, in the main environment.
SHELL := /bin/bash
.DEFAULT_GOAL := test
.PHONY: setup test demo bench clean distclean

# Extra pytest arguments, e.g. make test TESTS="test/test_ros_node.py -x"
TESTS ?=

# The main environment (.venv + install/): all that demo, bench and `make test TESTS=...` need.
setup:
	@ci/setup.sh

# The whole CI (ci/ci.sh also sets up .venv-tools, .overlay-oldest, .venv-numpy1 and .venv-jazzy).
test:
	@if [ -n "$(TESTS)" ]; then ci/setup.sh && ci/run_tests.sh $(TESTS); else ci/ci.sh; fi

demo: setup
	@set +u && . ci/env.sh && set -u && install/n3d_ros/lib/n3d_ros/n3d-demo --out out

bench: setup
	@set +u && . ci/env.sh && set -u && python bench/bench_node.py

clean:
	rm -rf build install log build-jazzy install-jazzy log-jazzy

distclean: clean
	rm -rf .venv .venv-jazzy .venv-tools .venv-numpy1 .overlay-oldest out
