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
config_before=$(cat "$daemon_json")

if [ "$has_sys_resource" -eq 0 ]; then
  log "CAP_SYS_RESOURCE is not in the bounding set: installing the runc wrapper runtime 'capfix'"
  cat > /usr/local/bin/runc-capfix.new <<'WRAP'
#!/bin/sh
# runc wrapper: remove CAP_SYS_RESOURCE from what runc is asked to start, because this
# machine can never grant it and runc fails hard ("unable to apply caps") when asked to.
# `create`/`run` read the bundle's config.json (.process.capabilities); `exec` (docker exec
# --privileged) reads a process.json given with --process (.capabilities).
runc=/usr/bin/runc
[ -x "$runc" ] || runc=/usr/sbin/runc
strip() { # $1 = file, $2 = jq path of the capabilities object
  [ -f "$1" ] && grep -q CAP_SYS_RESOURCE "$1" || return 0
  tmp="$1.capfix.$$"
  jq "($2 // {}) |= with_entries(.value |= map(select(. != \"CAP_SYS_RESOURCE\")))" "$1" > "$tmp" && mv "$tmp" "$1"
}
bundle=""; process=""; prev=""; cmd=""
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; --process|-p) process="$a";; esac
  case "$a" in --bundle=*) bundle="${a#--bundle=}";; --process=*) process="${a#--process=}";; esac
  if [ -z "$cmd" ]; then case "$a" in create|run|exec) cmd="$a";; esac; fi
  prev="$a"
done
case "$cmd" in
  create|run) strip "${bundle:-$PWD}/config.json" .process.capabilities ;;
  exec) [ -n "$process" ] && strip "$process" .capabilities ;;
esac
exec "$runc" "$@"
WRAP
  chmod 755 /usr/local/bin/runc-capfix.new
  mv /usr/local/bin/runc-capfix.new /usr/local/bin/runc-capfix
  jq '.runtimes.capfix.path = "/usr/local/bin/runc-capfix" | ."default-runtime" = "capfix"' "$daemon_json" > "$daemon_json.new"
  mv "$daemon_json.new" "$daemon_json"
fi

# The wrapper above is read on every runc call, so refreshing it needs no restart; only a
# changed daemon.json (or a stopped engine) does. Restarting needlessly would stop every
# running container, sandbox nodes included.
if engine_answers && [ "$config_before" = "$(cat "$daemon_json")" ]; then
  log "Docker engine answers: $(docker version --format '{{.Server.Version}}') (runtime: $(docker info --format '{{.DefaultRuntime}}'))"
  exit 0
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
