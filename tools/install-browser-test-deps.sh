#!/bin/sh
# Install what the web app's browser test needs: Debian's chromium (driven by Playwright for Python
# with executable_path=/usr/bin/chromium). Idempotent: does nothing when chromium is present; needs
# root (apt-get) to install, otherwise it only says what is missing and exits 0 so the test skips.
# Never runs `playwright install` (it downloads a browser build and fails offline).
set -eu

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    echo "chromium: present ($(command -v chromium || echo /usr/bin/chromium))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium: missing; run as root (apt-get install -y chromium) or the browser test is skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: missing and apt-get is not available here; the browser test will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium: installed ($(chromium --version 2>/dev/null | head -n 1))"
