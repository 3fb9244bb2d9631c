#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Run a test suite against the built binaries; see scripts/run-tests.py.
exec /usr/bin/python3 "$(dirname "$0")/run-tests.py" "$@"
