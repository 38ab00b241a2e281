#!/usr/bin/env bash
# Install what the network-namespace lab (tests/lab) needs: iproute2 (ip netns, veth),
# nftables (nft), miniupnpd's nftables build (the real NAT-PMP/PCP gateway) and natpmpc
# (a peer NAT-PMP client used by the smoke tests) and upnpc (miniupnpc: a peer UPnP IGD client).
#
# Idempotent: when every binary is already present it does nothing and touches no network.
# Debian's miniupnpd-nftables package ships only the daemon (no service unit or init script),
# but we still block service starts while installing, in case a future package version or a
# pulled-in "miniupnpd" package brings one: the lab starts its own miniupnpd inside a network
# namespace, and a daemon on the host would be useless (and would talk to the real network).
set -euo pipefail

PACKAGES=(iproute2 nftables miniupnpd-nftables natpmpc miniupnpc)
BINARIES=(ip nft miniupnpd natpmpc upnpc)
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for binary in "${BINARIES[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-lab-deps: all lab binaries present (${BINARIES[*]})"
    exit 0
fi
echo "install-lab-deps: missing ${missing[*]}; installing ${PACKAGES[*]}"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-lab-deps: must run as root to apt-get install" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-lab-deps: apt-get not found; install ${PACKAGES[*]} by hand" >&2
    exit 1
fi

# policy-rc.d exiting 101 tells invoke-rc.d (used by maintainer scripts) not to start any
# service. Only create it if the machine has none, and remove only the one we created.
POLICY=/usr/sbin/policy-rc.d
created_policy=no
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, created by natdeck .ci/install-lab-deps.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    created_policy=yes
fi
cleanup() {
    if [ "$created_policy" = yes ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

# Belt and braces: if a systemd unit for miniupnpd exists anyway, make sure it is neither
# running nor enabled (policy-rc.d does not cover a systemd that is PID 1 in every setup).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl list-unit-files miniupnpd.service >/dev/null 2>&1 \
        && systemctl list-unit-files miniupnpd.service | grep -q '^miniupnpd.service'; then
        systemctl disable --now miniupnpd.service || true
    fi
fi

for binary in "${BINARIES[@]}"; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "install-lab-deps: $binary still missing after install" >&2
        exit 1
    fi
done
echo "install-lab-deps: done ($(miniupnpd --version 2>&1 | head -n 1))"
