#!/bin/sh
# Make sure the browser tests have a Chromium: tests/test_browser.py drives /usr/bin/chromium through Playwright
# (Playwright's own browser download needs the internet, Debian's package needs only the apt mirror).
# Installs it only as root on a Debian-like system with apt-get; anywhere else it says why and does nothing,
# and the browser test then skips with the same reason.
set -eu
BROWSER=${FTLIB_BROWSER:-/usr/bin/chromium}

if [ -x "$BROWSER" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: $BROWSER missing and no apt-get here; install Chromium yourself, or the browser test skips"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser: $BROWSER missing and not root; run 'sudo apt-get install chromium', or the browser test skips"
    exit 0
fi
echo "browser: installing Debian's chromium with apt-get (once, for the JupyterLab browser test)"
if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    exit 0
fi
echo "browser: apt-get could not install chromium; the browser test skips"
