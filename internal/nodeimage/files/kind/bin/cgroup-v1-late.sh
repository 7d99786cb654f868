#!/bin/bash
# cgroup v1 hosts that mount only some controllers (hugetlb, net_cls,net_prio, perf_event
# missing on the host): runc mounts only what the host has, so kind's entrypoint cannot
# prepare kubelet's cgroup root in them, and systemd mounts them later during boot. kubelet
# (systemd driver, cgroupRoot /kubelet) then fails with "cgroup [kubelet] has some missing
# paths". Create kubelet's roots in every mounted v1 hierarchy, bind-mounted onto themselves
# so systemd does not remove them. No-op on cgroup v2.
set -u
[ -f /sys/fs/cgroup/cgroup.controllers ] && exit 0
for hierarchy in $(findmnt -lun -o target -t cgroup); do
  case "$hierarchy" in */kubelet|*/kubelet.slice) continue;; esac
  for root in kubelet kubelet.slice; do
    findmnt "$hierarchy/$root" >/dev/null 2>&1 && continue
    mkdir -p "$hierarchy/$root"
    if [ "$hierarchy" = /sys/fs/cgroup/cpuset ]; then
      cat "$hierarchy/cpuset.cpus" > "$hierarchy/$root/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" > "$hierarchy/$root/cpuset.mems"
    fi
    mount --bind "$hierarchy/$root" "$hierarchy/$root"
  done
done
exit 0
