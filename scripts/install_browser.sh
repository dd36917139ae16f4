#!/usr/bin/env bash
# Install Debian's chromium for the trace page's browser test (tests/trace), when it is missing and apt-get can
# install it (root on Debian). Anything else only prints a line: that test then skips, and nothing else needs it.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no chromium, and no root apt-get to install it: the trace page's browser test will skip"
  exit 0
fi
echo "install_browser: apt-get install chromium (~45 s) for the trace page's browser test"
apt-get install -y -qq chromium >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
  || echo "install_browser: chromium could not be installed: the trace page's browser test will skip"
exit 0
