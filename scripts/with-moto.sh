#!/usr/bin/env bash
# Runs a command with one moto server (the real AWS wire protocol for Secrets Manager and
# DynamoDB) listening on 127.0.0.1, exported to the command as MOTO_ENDPOINT. moto is
# stopped when the command ends, fails or is interrupted.
set -euo pipefail
moto=${MOTO_SERVER:-.venv/bin/moto_server}
if [[ ! -x $moto ]]; then
  echo "with-moto: $moto not found; run 'make tools' first" >&2
  exit 1
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p .dev/logs
log=.dev/logs/moto-test.log
"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "with-moto: moto exited:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "with-moto: moto did not answer in 10 s" >&2; exit 1; }
export MOTO_ENDPOINT="http://127.0.0.1:$port"
"$@"
