#!/bin/bash
# Run the whole test suite: engine tests through cffi, real namespaces and
# TAPs, the CLI as a user types it, Open vSwitch interoperation.  Does its
# own set-up (packages, virtualenv, C engine build) and is safe to re-run.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k fdb -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest tests -v -p no:cacheprovider "$@"
