#!/usr/bin/env bash
# A faultline CI gate for any CI system: builds faultline, runs a campaign, and leaves
# junit.xml and the campaign folder where the CI system can pick them up. Run it as the CI
# user: it builds as that user and uses sudo (unless already root) for the packages and for
# the campaign, which needs root (network namespaces and nftables).
#
#   examples/ci/gate.sh [CAMPAIGN.toml] [OUT_DIR]
#
# Exit code: faultline's (0 every run valid, 1 a run invalid, 2 some run unknown or not run,
# 254 a bad campaign file): let the CI step fail on anything but 0.
set -euo pipefail
# Paths as given, from where the script was started; then work from the repository root.
campaign="$(realpath -m "${1:-examples/ci/campaign.toml}")"
out="$(realpath -m "${2:-ci-results}")"
cd "$(dirname "$0")/../.."
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends iproute2 nftables faketime >/dev/null
fi
"${CARGO:-cargo}" build --release --locked -p faultline
mkdir -p "$out"
rm -f "$out/junit.xml"
status=0
$sudo target/release/faultline campaign "$campaign" --output "$out" || status=$?
[ -z "$sudo" ] || $sudo chown -R "$(id -u):$(id -g)" "$out"
# The campaign folder just made (the newest): campaign.json, junit.xml, campaign.html, runs/,
# logs/. A bad campaign file (exit 254) makes none: faultline's message above says why.
latest="$(ls -td "$out"/*/*/ 2>/dev/null | head -n 1 || true)"
if [ -n "$latest" ] && [ -f "$latest/junit.xml" ]; then
    cp "$latest/junit.xml" "$out/junit.xml"
    echo "campaign folder: $latest (open campaign.html); JUnit: $out/junit.xml"
fi
exit "$status"
