#!/usr/bin/env bash
# conformance.sh - libiscsi's whole conformance suite against lunbox, counted honestly.
#
#   scripts/conformance.sh [-b BACKSTORE] [-t TESTS] [-o OUTDIR] [URL]
#
# Without URL it starts lunbox itself (node dist/lunbox.js) on 127.0.0.1:3295 with
# BACKSTORE [ram:256M] (e.g. file:/tmp/cu.img:256M) and stops it afterwards.
# Runs `iscsi-test-cu --dataloss -t TESTS URL` (TESTS [ALL] = every SCSI.* and iSCSI.*
# suite once) and prints per-suite and total counts. CUnit counts a test that libiscsi
# skipped (it prints "[SKIPPED]" and passes) as passed; here skips are counted apart.
# Exit status 0 when no test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BACKSTORE=ram:256M; TESTS=ALL; OUT=""
while getopts "b:t:o:h" o; do
  case $o in b) BACKSTORE=$OPTARG ;; t) TESTS=$OPTARG ;; o) OUT=$OPTARG ;; *) sed -n '2,12p' "$0"; exit 2 ;; esac
done
shift $((OPTIND - 1))
URL=${1:-}
OUT=${OUT:-/tmp/lunbox-conformance-$(date +%s)}
mkdir -p "$OUT"
command -v iscsi-test-cu >/dev/null || { echo "conformance: iscsi-test-cu missing (apt-get install libiscsi-bin)" >&2; exit 1; }
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null' EXIT
if [ -z "$URL" ]; then
  [ -f dist/lunbox.js ] || npx tsup >/dev/null
  node dist/lunbox.js serve --listen 127.0.0.1:3295 --backstore "$BACKSTORE" --iqn iqn.2026-11.org.lunbox:conformance >"$OUT/url" 2>"$OUT/lunbox.log" &
  PID=$!
  for _ in $(seq 50); do grep -q iscsi:// "$OUT/url" && break; sleep 0.1; done
  URL=$(grep -m1 iscsi:// "$OUT/url") || { echo "conformance: lunbox did not start: $(cat "$OUT/lunbox.log")" >&2; exit 1; }
fi
echo "# iscsi-test-cu --dataloss -t $TESTS $URL  (log: $OUT/test-cu.txt)" >&2
timeout 3600 iscsi-test-cu --dataloss -t "$TESTS" "$URL" >"$OUT/test-cu.txt" 2>&1
awk '
  function finish(word) {
    if (name == "") return
    res = (word ~ /FAILED/) ? "failed" : (text ~ /\[SKIPPED\]/ ? "skipped" : "passed")
    n[suite, res]++; n[suite, "tests"]++; tot[res]++; tot["tests"]++
    if (res == "failed") fails = fails "  failed " suite "." name "\n"
    name = ""
  }
  /^Suite: / { suite = $2; if (!(suite in seen)) { seen[suite] = 1; order[++ns] = suite }; next }
  /^  Test: / {
    name = $2; text = $0
    if ($0 ~ /(passed|FAILED)[ \t]*$/) { w = $NF; finish(w) }
    next
  }
  name != "" && /^(passed|FAILED)/ { finish($1); next }
  name != "" { text = text "\n" $0 }
  END {
    for (i = 1; i <= ns; i++) { s = order[i]
      printf "suite %-28s tests %3d passed %3d failed %3d skipped %3d\n", s, n[s,"tests"], n[s,"passed"], n[s,"failed"], n[s,"skipped"] }
    printf "%s", fails
    printf "total tests %d passed %d failed %d skipped %d\n", tot["tests"], tot["passed"], tot["failed"], tot["skipped"]
    exit (tot["failed"] > 0 || tot["tests"] == 0)
  }' "$OUT/test-cu.txt" | tee "$OUT/summary.txt"
exit "${PIPESTATUS[0]}"
