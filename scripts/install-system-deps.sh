#!/usr/bin/env bash
# Install the system programs lipspeech needs (ffmpeg, espeak-ng, chromium) when missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# libespeak-ng is used through ctypes for phoneme timings
ldconfig -p 2>/dev/null | grep -q 'libespeak-ng.so.1' || need+=(libespeak-ng1)
# headless Chromium renders report.html in the tests (audio players, images); Debian's package is "chromium"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ "${#need[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "lipspeech needs: ${need[*]} (no apt-get here: install them with your package manager, or use envs/lipspeech.yaml with conda)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "lipspeech needs system packages that are missing. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
