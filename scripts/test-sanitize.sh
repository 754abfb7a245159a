#!/bin/bash
# The engine built with AddressSanitizer and UndefinedBehaviorSanitizer,
# then the engine tests (property-based ones included) and the namespace
# suite run against it.  Any out-of-bounds access, use after free or
# undefined behaviour aborts the run.  Builds in a private copy of the tree
# so the normal build in .venv is untouched.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test >/dev/null

work=$(mktemp -d /tmp/vswitch-sanitize.XXXXXX)
trap 'rm -rf "$work"' EXIT
# tracked and new files, without build products
git ls-files -z --cached --others --exclude-standard | \
    grep -zv '^bench/results/' | xargs -0 cp --parents -t "$work"

python3 -m venv "$work/.venv"
"$work/.venv/bin/pip" install -q --disable-pip-version-check "setuptools>=77" wheel "cffi>=1.16"
( cd "$work" && VSWITCH_SANITIZE=1 .venv/bin/pip install -q --disable-pip-version-check \
      --no-build-isolation -e ".[test]" )

# The interpreter is not instrumented, so the sanitizer runtimes are
# preloaded; leak checking is off because CPython keeps memory until exit.
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
cd "$work"
.venv/bin/python -m pytest tests/engine tests/netns -q -p no:cacheprovider "$@"
# Elsewhere, the tests marked "sanitize": hostile input against the parts of
# the engine that other directories test (flow cache, tunnels, LACP...).
# Exit status 5 means none is marked yet.
status=0
.venv/bin/python -m pytest tests -m sanitize --ignore=tests/engine --ignore=tests/netns \
    -q -p no:cacheprovider "$@" || status=$?
[[ $status == 0 || $status == 5 ]] || exit $status
