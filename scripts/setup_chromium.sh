#!/usr/bin/env bash
# Idempotent: installs Debian's chromium (headless browser for the report's page test, tests/test_report.py)
# when /usr/bin/chromium is missing. Only root can apt-get; anyone else is told what to run, and the browser test
# skips. Exit status is 0 either way, so a test setup can call it unconditionally.
set -uo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  echo "setup_chromium: $CHROMIUM present, nothing to do"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup_chromium: $CHROMIUM missing and not root; run: sudo apt-get install chromium" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup_chromium: $CHROMIUM missing and no apt-get here; install chromium by hand" >&2
  exit 0
fi
echo "setup_chromium: installing chromium with apt-get"
# Fonts come with it (fonts-liberation is a dependency), so screenshots show text rather than boxes.
if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    fonts-dejavu-core >/dev/null; then
  echo "setup_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
else
  echo "setup_chromium: apt-get install chromium failed; the browser test will skip" >&2
fi
exit 0
