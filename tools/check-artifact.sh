#!/usr/bin/env bash
# check-artifact.sh DIR ARCH: DIR (a `sam build` function artifact) holds exactly one file,
# `bootstrap`, an executable ELF for ARCH (x86_64 or arm64). Nothing else of the workspace
# may be shipped.
set -euo pipefail
dir=$1 arch=$2
case $arch in
  x86_64) want=003e ;;  # ELF e_machine EM_X86_64
  arm64) want=00b7 ;;   # ELF e_machine EM_AARCH64
  *) echo "check-artifact: unknown architecture $arch" >&2; exit 2 ;;
esac
files=$(cd "$dir" && find . -mindepth 1 | sort)
if [[ $files != "./bootstrap" ]]; then
  echo "check-artifact: $dir should hold only bootstrap, it holds:" >&2
  echo "$files" >&2
  exit 1
fi
bin=$dir/bootstrap
magic=$(od -An -tx1 -N4 "$bin" | tr -d ' \n')
machine=$(od -An -tx2 -j18 -N2 --endian=little "$bin" | tr -d ' \n')
if [[ $magic != 7f454c46 || $machine != "$want" || ! -x $bin ]]; then
  echo "check-artifact: $bin is not an executable $arch ELF (magic $magic, machine $machine)" >&2
  exit 1
fi
echo "check-artifact: $bin is an executable $arch ELF, $(stat -c %s "$bin") bytes, alone in $dir"
