#!/usr/bin/env bash
# System packages that napari needs to run headless under Xvfb (tests of voxseg.apps.napari).
# Idempotent: installs only what is missing, and only when running as root; otherwise it
# prints the command to run. Python packages come from the [napari] extra plus pytest-qt
# and pytest-xvfb.
set -euo pipefail

PACKAGES=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0
          libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "napari test dependencies: all present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "napari test dependencies missing: ${missing[*]}" >&2
    echo "run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
echo "napari test dependencies: installed ${missing[*]}"
