#!/usr/bin/env bash
# Print the path of a Python interpreter that can import torch: $TRAPDOOR_PYTHON if set, else the
# first of `python3` and `/usr/bin/python3` that works. (The python3 first on PATH may be a pyenv
# build without Debian's python3-torch.)
set -u
if [ -n "${TRAPDOOR_PYTHON:-}" ]; then
  echo "$TRAPDOOR_PYTHON"
  exit 0
fi
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch, numpy' >/dev/null 2>&1; then
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python with torch and numpy found: install python3-torch (apt-get install python3-torch) or set TRAPDOOR_PYTHON" >&2
exit 1
