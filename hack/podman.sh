#!/usr/bin/env bash
# A project-local container engine: podman's Docker-compatible API on a unix
# socket, with its configuration, storage, state, pid and log all under DIR.
# See docs/container-engine.md for why each setting is what it is.
#
#   hack/podman.sh start DIR   install what is missing, start the service if it
#                              does not answer yet, print the socket path
#   hack/podman.sh stop DIR    remove every container, stop the service, unmount
#                              what podman mounted under DIR (DIR can then be
#                              deleted; its images are kept for the next start)
#   hack/podman.sh status DIR  exit 0 and print the socket path when it answers
#   hack/podman.sh env DIR     print the exports that let the podman CLI see
#                              the same engine (eval "$(hack/podman.sh env DIR)")
#
# Idempotent: a second `start` only checks the socket. Needs root (rootless
# podman is not set up here). Everything it prints on stdout is the socket
# path; progress goes to stderr.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status|env DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
case $cmd in
  start) mkdir -p "$2" ;;
  *) [ -d "$2" ] || { [ "$cmd" = stop ] && exit 0; exit 1; } ;;
esac
dir=$(cd "$2" && pwd -P)
sock=$dir/podman.sock
pidfile=$dir/podman.pid
log=$dir/podman.log
# A unix socket path must fit in sun_path (108 bytes with its NUL).
if [ ${#sock} -gt 100 ]; then
  echo "podman.sh: $sock is too long for a unix socket path; use a shorter DIR" >&2
  exit 1
fi

export CONTAINERS_CONF=$dir/containers.conf
export CONTAINERS_STORAGE_CONF=$dir/storage.conf
# The CLI calls below use this engine's storage directly, never a remote one.
unset CONTAINER_HOST CONTAINER_CONNECTION DOCKER_HOST

say() { echo "podman.sh: $*" >&2; }

answers() {
  [ -S "$sock" ] && curl -fsS --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1
}

service_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # Only our own service: podman, with our socket on its command line.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "unix://$sock" || return 1
  echo "$pid"
}

install_missing() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  command -v runc >/dev/null 2>&1 || need+=(runc)
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${need[*]}; install them (Debian: apt-get install ${need[*]})"
    exit 1
  fi
  say "installing ${need[*]} from Debian"
  apt-get update -qq
  # --no-install-recommends: no buildah, fuse-overlayfs, slirp4netns or
  # dbus-user-session; nothing here needs them. Naming runc satisfies podman's
  # "crun | runc" dependency, so crun is not pulled in.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
}

# Writes $1 with the content on stdin, only when it differs.
write_if_changed() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

write_config() {
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/cni" "$dir/no-cni-plugins"
  # conmon 2.1.6 writes its OOM marker ("oom") into its working directory,
  # which is the service's; podman 4.3 looks for it in the container's bundle
  # directory. This wrapper starts conmon in the bundle directory (-b), so
  # that State.OOMKilled is reported.
  write_if_changed "$dir/conmon" <<'CONMON'
#!/bin/sh
# Written by hack/podman.sh; see docs/container-engine.md.
prev=
for a in "$@"; do
  case $prev in -b | --bundle) cd "$a" 2>/dev/null || true; break ;; esac
  case $a in --bundle=*) cd "${a#--bundle=}" 2>/dev/null || true; break ;; esac
  prev=$a
done
exec /usr/bin/conmon "$@"
CONMON
  chmod 0755 "$dir/conmon"
  write_if_changed "$CONTAINERS_CONF" <<EOF
# Written by hack/podman.sh; see docs/container-engine.md.
[containers]
# The default ulimits (nofile=1048576) exceed this host's hard limit and the
# engine lacks CAP_SYS_RESOURCE: runc fails with "error setting rlimit type 7".
default_ulimits = []
# For the podman CLI. The Docker API ignores it (its default is "bridge"):
# clients must send network_mode "none"; see cni_plugin_dirs below.
netns = "none"
# conmon writes the logs that GET /containers/{id}/logs reads; no journald.
log_driver = "k8s-file"

[network]
# CNI configuration of this engine only.
network_config_dir = "$dir/cni"
# Fail closed: the Docker API's default network_mode is "bridge" whatever
# netns says, and a bridge would give the container a route out (and create
# cni-podman0, iptables chains and /var/lib/cni on the host). With no CNI
# plugins to find, such a container fails to start instead.
cni_plugin_dirs = ["$dir/no-cni-plugins"]

[engine]
# conmon started in the container's bundle directory, where podman looks for
# its OOM marker (State.OOMKilled); see the wrapper.
conmon_path = ["$dir/conmon"]
# crun 1.8 refuses hybrid cgroup hierarchies ("cgroups in hybrid mode not
# supported"); runc works.
runtime = "runc"
# No systemd as PID 1: cgroups are managed through the cgroupfs.
cgroup_manager = "cgroupfs"
# No journald: events go to a file.
events_logger = "file"
events_logfile_path = "$dir/events.log"
# Per-boot state (alive file, exit codes, locks) under DIR, not /run/libpod.
tmp_dir = "$dir/tmp"
# File locks under tmp_dir instead of the host-wide /dev/shm/libpod_lock
# segment that every root podman allocates from: nothing of this engine
# outlives DIR (locks of containers in a deleted DIR would stay taken there).
lock_type = "file"
# Image import staging inside the storage, not /var/tmp.
image_copy_tmp_dir = "storage"
EOF
  write_if_changed "$CONTAINERS_STORAGE_CONF" <<EOF
# Written by hack/podman.sh; see docs/container-engine.md.
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
}

# tmp_dir and runroot are meant to be wiped at boot; they live on disk here,
# so wipe them ourselves when the machine has rebooted since the last start.
reset_after_reboot() {
  local boot
  boot=$(cat /proc/sys/kernel/random/boot_id)
  if [ -f "$dir/boot_id" ] && [ "$(cat "$dir/boot_id")" != "$boot" ]; then
    say "machine rebooted since last start: clearing per-boot state"
    rm -rf "$dir/tmp" "$dir/run"
    mkdir -p "$dir/tmp" "$dir/run"
  fi
  echo "$boot" >"$dir/boot_id"
}

unmount_under_dir() {
  local m
  # Deepest first; mountinfo's field 5 is the mount point (octal-escaped).
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# conmon processes outlive the service; ours carry DIR on their command line.
kill_leftover_conmons() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = conmon ] || continue
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qF "$dir/"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

start() {
  if answers; then
    echo "$sock"
    return 0
  fi
  install_missing
  write_config
  if pid=$(service_pid); then
    # Started but not answering yet (or wedged): give it a moment, then replace.
    for _ in $(seq 50); do
      answers && { echo "$sock"; return 0; }
      sleep 0.1
    done
    say "service $pid does not answer; restarting it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  reset_after_reboot
  rm -f "$sock"
  # setsid: its own session, so a test harness's signals to its process group
  # do not reach it; every fd redirected, so a caller capturing our output
  # does not wait for the service to exit (and fd 9, the lock, is not inherited).
  # Run from DIR: whatever podman or conmon drops in its working directory
  # stays there.
  cd "$dir"
  setsid podman system service --time=0 "unix://$sock" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
  for _ in $(seq 150); do
    if answers; then
      echo "$sock"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      say "service exited; last lines of $log:"
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  say "service did not answer on $sock within 15s; see $log"
  exit 1
}

stop() {
  [ -f "$CONTAINERS_CONF" ] || { unmount_under_dir; return 0; }
  if command -v podman >/dev/null 2>&1; then
    # Kill and remove every container of this engine (the CLI reads the same
    # storage directly; it works whether or not the service runs).
    podman rm --all --force --time 0 >/dev/null 2>&1 || true
  fi
  if pid=$(service_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile" "$sock"
  kill_leftover_conmons
  unmount_under_dir
  # POST /images/create?fromSrc=- leaves each uploaded tarball here (podman
  # 4.3 never removes it); POST /images/load cleans up after itself.
  rm -f "$dir"/storage/tmp/api_load.tar*
}

# One start or stop at a time per DIR (test binaries may start it together).
lock() {
  exec 9>>"$dir/.podman.sh.lock"
  flock 9
}

case $cmd in
  start) lock && start ;;
  stop) lock && stop ;;
  status)
    answers || exit 1
    echo "$sock"
    ;;
  env)
    printf 'export CONTAINERS_CONF=%q CONTAINERS_STORAGE_CONF=%q DOCKER_HOST=%q\n' \
      "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "unix://$sock"
    ;;
  *) usage ;;
esac
