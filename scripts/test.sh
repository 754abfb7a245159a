#!/bin/bash
# Run the whole test suite: engine tests through cffi, real namespaces and
# TAPs, the CLI as a user types it, Open vSwitch interoperation -- then the
# engine and namespace tests again against an engine built with AddressSanitizer
# and UndefinedBehaviorSanitizer.  Does its own set-up (packages, virtualenv,
# C engine build) and is safe to re-run.
# Extra arguments go to the main pytest run, e.g.  scripts/test.sh -k fdb -x
# (VSWITCH_SKIP_SANITIZE=1 leaves the sanitizer pass out.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/python -m pytest tests bench/tests -v -p no:cacheprovider "$@"
if [[ "${VSWITCH_SKIP_SANITIZE:-0}" != 1 ]]; then
    echo "== the same engine and namespace tests, engine built with ASan + UBSan"
    scripts/test-sanitize.sh
fi
