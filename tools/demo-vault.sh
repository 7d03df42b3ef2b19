#!/usr/bin/env bash
# `make demo`, the vault part: the demo release goes into an embedded vault under
# demo-output/vault, a lab browses the catalog and the mock release, asks for access, a
# reviewer approves (two steps), the lab pulls and loads a sample through vault://, then
# runs a clean-room metrics job (mock run, job review, real run in the sandbox, output
# gate, output review and release, download), and the provider checks the audit log
# against the checkpoint it cosigned and kept.
# Everything runs on this machine: the server listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo-output}
R=$OUT/vault
K=$OUT/provider-keys      # the provider's own keys: outside the vault root
V="$BIN/demofab vault"
rm -rf "$R" "$K"
mkdir -p "$K" && chmod 700 "$K"

echo "== provider: a vault, a dataset, the demo release stored encrypted"
$V init --root "$R" --key-file "$K/provider.key"
$V provider create --root "$R" acme --display-name "ACME assembly plant"
$V dataset create --root "$R" pick --provider acme --approvals 1 \
  --title "Pick and place at station 4" --summary "G1 humanoid, right hand, cube into bin"
$V ingest --root "$R" --dataset pick "$OUT/releases/demo"
$V lab create --root "$R" lab1 --display-name "A robot-learning lab"
for who in ana rita bob; do $V identity create --root "$R" "$who"; done
$V role assign --root "$R" ana provider --provider acme
$V role assign --root "$R" rita reviewer --dataset pick
$V role assign --root "$R" bob lab_member --lab lab1
LAB=$($V token create --root "$R" bob --scope catalog:read --scope requests --scope grants \
      --scope pull --scope jobs --days 1 --name demo 2>/dev/null)
REVIEWER=$($V token create --root "$R" rita --scope catalog:read --scope reviews --days 1 \
           --name demo 2>/dev/null)

PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$V serve --root "$R" --host 127.0.0.1 --port "$PORT" > "$OUT/vault-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do  # the server is up when /health answers
  "$BIN/python" -c "import httpx,sys; httpx.get('http://127.0.0.1:$PORT/health', trust_env=False).raise_for_status()" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/vault-server.log" >&2; exit 1; }
  sleep 0.2
done

"$BIN/python" tools/demo_lab.py --url "http://127.0.0.1:$PORT" --dataset pick \
  --lab-token "$LAB" --reviewer-token "$REVIEWER"
kill -INT $SERVER && wait $SERVER 2>/dev/null || true  # the server signs a last checkpoint as it stops
trap - EXIT

echo "== provider: cosign the log's checkpoint, keep it, and check the log against it"
$V key new cosigner --out "$K/cosigner.key" --name acme.example/cosigner --root "$R"
$V audit cosign --root "$R" --key-file "$K/cosigner.key" --out "$K/kept.checkpoint"
$V audit verify --root "$R" --checkpoint "$K/kept.checkpoint"
$V audit show --root "$R" --dataset pick > "$OUT/audit-pick.txt"
echo "$(wc -l < "$OUT/audit-pick.txt") entries for dataset pick in $OUT/audit-pick.txt, the first:"
head -n 8 "$OUT/audit-pick.txt"
