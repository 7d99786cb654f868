#!/usr/bin/env bash
# Prepares this machine for `sandbox up` and `make test`, idempotently: a working Docker
# engine (hack/setup-docker.sh) and the host tools the offline node image build uses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

"$here/setup-docker.sh"

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# debootstrap of Debian from a non-Debian host (Ubuntu runners) needs Debian's keys.
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
  printf '• installing %s\n' "${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# Every kind node runs systemd and kubelet, each holding inotify instances; the common default of
# 128 per user runs out with a few clusters ("Too many open files", nodes exiting 137).
if [ "$(sysctl -n fs.inotify.max_user_instances 2>/dev/null || echo 0)" -lt 512 ]; then
  sysctl -q -w fs.inotify.max_user_instances=512 || echo "! could not raise fs.inotify.max_user_instances to 512; several sandboxes at once may fail" >&2
fi
if [ "$(sysctl -n fs.inotify.max_user_watches 2>/dev/null || echo 0)" -lt 524288 ]; then
  sysctl -q -w fs.inotify.max_user_watches=524288 || true
fi
command -v go >/dev/null 2>&1 || { echo "✗ Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }
printf '• host ready: %s, %s\n' "$(docker version --format 'docker {{.Server.Version}}')" "$(go version | awk '{print $3}')" >&2
