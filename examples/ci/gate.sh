#!/usr/bin/env bash
# A faultline CI gate for any CI system: builds faultline, runs a campaign, and leaves
# junit.xml and the campaign folder where the CI system can pick them up. Needs root (network
# namespaces and nftables) and, on Debian or Ubuntu, the packages below.
#
#   sudo examples/ci/gate.sh [CAMPAIGN.toml] [OUT_DIR]
#
# Exit code: faultline's (0 every run valid, 1 a run invalid, 2 some run unknown or not run,
# 254 a bad campaign file): let the CI step fail on anything but 0.
set -euo pipefail
# Paths as given, from where the script was started; then work from the repository root.
campaign="$(realpath -m "${1:-examples/ci/campaign.toml}")"
out="$(realpath -m "${2:-ci-results}")"
cd "$(dirname "$0")/../.."

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y --no-install-recommends iproute2 nftables faketime >/dev/null
fi
cargo build --release --locked -p faultline
mkdir -p "$out"
status=0
target/release/faultline campaign "$campaign" --output "$out" || status=$?
# The newest campaign folder: campaign.json, junit.xml, campaign.html, runs/, logs/. A bad
# campaign file (exit 254) makes none: faultline's message above says why.
latest="$(ls -d "$out"/*/*/ 2>/dev/null | sort | tail -n 1 || true)"
if [ -n "$latest" ] && [ -f "$latest/junit.xml" ]; then
    cp "$latest/junit.xml" "$out/junit.xml"
    echo "campaign folder: $latest (open campaign.html); JUnit: $out/junit.xml"
fi
exit "$status"
