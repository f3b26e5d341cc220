#!/usr/bin/env bash
# Installs Debian's chromium for the end-to-end browser tests (driven by Playwright for Python with
# executable_path=/usr/bin/chromium; `playwright install` is never used: it downloads its own build).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
