#!/usr/bin/env bash
# Checks the tools the build needs and installs what can be installed here.
# Idempotent: a second run only checks.
set -euo pipefail

missing=()
command -v cargo >/dev/null 2>&1 || missing+=("cargo (Rust 1.89+): https://rustup.rs")

# Go builds the control plane. Any Go >= 1.21 will do: it fetches the exact
# toolchain e2e/controlplane/go.mod asks for from the Go module proxy.
if ! command -v go >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "prereqs: installing Go from Debian" >&2
    apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
  fi
fi
if command -v go >/dev/null 2>&1; then
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "${minor:-0}" -lt 21 ]; then
    missing+=("Go 1.21 or newer (found $(go env GOVERSION)): https://go.dev/doc/install")
  fi
else
  missing+=("Go 1.21 or newer: apt-get install golang-go, or https://go.dev/doc/install")
fi

# git (the agent's tests run a real `git daemon`), and what git2 builds
# libgit2 with: pkg-config and OpenSSL's headers.
need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if ! pkg-config --exists openssl 2>/dev/null; then need_apt+=(libssl-dev); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "prereqs: installing ${need_apt[*]} from Debian" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    missing+=("${need_apt[*]}: apt-get install ${need_apt[*]}")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "prereqs: missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
