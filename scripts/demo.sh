#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job: see scripts/demo.py.
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$@"
