# Our own environment without a system ROS (see README): `make test`, `make demo`.
# Every target sets up first; setup is idempotent and takes seconds once done (ci/setup.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := test
.PHONY: setup test demo bench clean distclean

# Extra pytest arguments, e.g. make test TESTS="test/test_ros_node.py -x"
TESTS ?=

setup:
	@ci/setup.sh

test: setup
	@ci/run_tests.sh $(TESTS)

demo: setup
	@set +u && . ci/env.sh && set -u && install/n3d_ros/lib/n3d_ros/n3d-demo --out out

bench: setup
	@set +u && . ci/env.sh && set -u && python bench/bench_node.py

clean:
	rm -rf build install log

distclean: clean
	rm -rf .venv out
