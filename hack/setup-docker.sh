#!/usr/bin/env bash
# Makes a working Docker engine available on a Debian/Ubuntu machine, idempotently.
#
# - Installs Debian's docker.io (engine + containerd) when no engine answers.
# - When CAP_SYS_RESOURCE is missing from this process's bounding set (restricted VMs),
#   `docker run --privileged` fails in runc with "unable to apply caps: operation not
#   permitted" because runc asks for a capability the kernel will never grant. We then
#   register a runc wrapper runtime that drops CAP_SYS_RESOURCE from every OCI spec it
#   is handed and make it Docker's default runtime (see shared/facts/offline-kind.md §3.0, §7).
# - Starts dockerd when it is not running and waits until it answers.
#
# Re-running it changes nothing on a machine that is already set up.
set -euo pipefail

log() { printf '• %s\n' "$*" >&2; }
die() { printf '✗ %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "hack/setup-docker.sh must run as root (it installs packages and starts dockerd)"

engine_answers() { docker info >/dev/null 2>&1; }

if engine_answers && [ "${SANDBOX_DOCKER_FORCE_SETUP:-}" = "" ]; then
  log "Docker engine already answers: nothing to do"
  exit 0
fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v jq >/dev/null 2>&1 || need_pkgs+=(jq)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]} from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# CAP_SYS_RESOURCE is capability 24.
bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
has_sys_resource=$(( (0x$bnd >> 24) & 1 ))

mkdir -p /etc/docker
daemon_json=/etc/docker/daemon.json
[ -s "$daemon_json" ] || echo '{}' > "$daemon_json"

if [ "$has_sys_resource" -eq 0 ]; then
  log "CAP_SYS_RESOURCE is not in the bounding set: installing the runc wrapper runtime 'capfix'"
  cat > /usr/local/bin/runc-capfix.new <<'WRAP'
#!/bin/sh
# runc wrapper: remove CAP_SYS_RESOURCE from the bundle's config.json before `runc create|run`,
# because this machine can never grant it and runc fails hard when asked to.
runc=/usr/bin/runc
[ -x "$runc" ] || runc=/usr/sbin/runc
bundle=""
prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; esac
  case "$a" in --bundle=*) bundle="${a#--bundle=}";; esac
  prev="$a"
done
cmd=""
for a in "$@"; do case "$a" in create|run) cmd="$a"; break;; esac; done
if [ -n "$cmd" ]; then
  [ -n "$bundle" ] || bundle="$PWD"
  cfg="$bundle/config.json"
  if [ -f "$cfg" ] && grep -q CAP_SYS_RESOURCE "$cfg"; then
    tmp="$cfg.capfix.$$"
    jq '(.process.capabilities // {}) |= with_entries(.value |= map(select(. != "CAP_SYS_RESOURCE")))' "$cfg" > "$tmp" && mv "$tmp" "$cfg"
  fi
fi
exec "$runc" "$@"
WRAP
  chmod 755 /usr/local/bin/runc-capfix.new
  mv /usr/local/bin/runc-capfix.new /usr/local/bin/runc-capfix
  jq '.runtimes.capfix.path = "/usr/local/bin/runc-capfix" | ."default-runtime" = "capfix"' "$daemon_json" > "$daemon_json.new"
  mv "$daemon_json.new" "$daemon_json"
fi

start_dockerd() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl restart docker
    return
  fi
  # No systemd (containers, CI sandboxes): run dockerd ourselves, detached, logging to a file.
  if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    kill "$(cat /var/run/docker.pid)" || true
    for _ in $(seq 50); do kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  fi
  # Debian's dockerd starts its own containerd when none is given.
  nohup dockerd >/var/log/sandbox-dockerd.log 2>&1 </dev/null &
  disown || true
}

log "starting dockerd"
start_dockerd
for _ in $(seq 120); do
  engine_answers && break
  sleep 0.5
done
engine_answers || die "dockerd did not answer within 60s; see /var/log/sandbox-dockerd.log"
log "Docker engine ready: $(docker version --format '{{.Server.Version}}') (runtime: $(docker info --format '{{.DefaultRuntime}}'))"
