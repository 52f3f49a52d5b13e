#!/usr/bin/env bash
# conformance.sh - libiscsi's whole conformance suite against lunbox, counted honestly.
#
#   scripts/conformance.sh [-b BACKSTORE] [-t TESTS] [-o OUTDIR] [-s] [-m] [URL]
#
# Without URL it starts lunbox itself (node dist/lunbox.js) on 127.0.0.1:3295 with
# BACKSTORE [ram:256M] (e.g. file:/tmp/cu.img:256M) and stops it afterwards.
# Runs `iscsi-test-cu --dataloss -t TESTS URL` (TESTS [ALL] = every SCSI.* and iSCSI.*
# suite once) and prints per-suite and total counts. CUnit counts a test that libiscsi
# skipped (it prints "[SKIPPED]" and passes) as passed; here skips are counted apart.
# -s lists every skipped test with libiscsi's reason. -m gives the URL twice, so the
# MultipathIO tests run over two sessions to the same LUN. Exit status 0 when no test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BACKSTORE=ram:256M; TESTS=ALL; OUT=""; SHOW_SKIPS=0; MULTI=0
while getopts "b:t:o:smh" o; do
  case $o in b) BACKSTORE=$OPTARG ;; t) TESTS=$OPTARG ;; o) OUT=$OPTARG ;; s) SHOW_SKIPS=1 ;; m) MULTI=1 ;; *) sed -n '2,12p' "$0"; exit 2 ;; esac
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
echo "# iscsi-test-cu --dataloss -t $TESTS $URL$([ "$MULTI" = 1 ] && echo " $URL")  (log: $OUT/test-cu.txt)" >&2
URLS=("$URL"); [ "$MULTI" = 1 ] && URLS+=("$URL")
timeout 3600 iscsi-test-cu --dataloss -t "$TESTS" "${URLS[@]}" >"$OUT/test-cu.txt" 2>&1
awk -v show_skips="$SHOW_SKIPS" '
  # Same rule as test/integration/helpers.ts parseTestCu: the result token is the first
  # "passed"/"FAILED" right after "Test: NAME ..." or at the start of a later line; text
  # after it on that line is the suite cleanup, not the test.
  function finish(word) {
    res = (word == "FAILED") ? "failed" : (text ~ /\[SKIPPED\]/ ? "skipped" : "passed")
    n[suite, res]++; n[suite, "tests"]++; tot[res]++; tot["tests"]++
    if (res == "failed") fails = fails "  failed " suite "." name "\n"
    if (res == "skipped") { split(text, tl, "\n"); for (k in tl) if (tl[k] ~ /\[SKIPPED\]/) { sub(/^[ \t]*/, "", tl[k]); skips = skips "  skipped " suite "." name ": " tl[k] "\n"; break } }
    name = ""
  }
  /^Suite: / { suite = $2; name = ""; if (!(suite in seen)) { seen[suite] = 1; order[++ns] = suite }; next }
  /^  Test: / {
    name = $2; body = $0; sub(/^  Test: [^ ]+ \.\.\./, "", body); text = ""
    if (body ~ /^(passed|FAILED)/) { finish(substr(body, 1, 6) == "FAILED" ? "FAILED" : "passed") } else text = body
    next
  }
  name != "" && /^(passed|FAILED)/ { finish(substr($0, 1, 6) == "FAILED" ? "FAILED" : "passed"); next }
  name != "" { text = text "\n" $0 }
  END {
    for (i = 1; i <= ns; i++) { s = order[i]
      printf "suite %-26s tests %3d  passed %3d  failed %3d  skipped %3d\n", s, n[s,"tests"], n[s,"passed"], n[s,"failed"], n[s,"skipped"] }
    printf "%s", fails
    if (show_skips) printf "%s", skips
    printf "total tests %d passed %d failed %d skipped %d\n", tot["tests"], tot["passed"], tot["failed"], tot["skipped"]
    exit (tot["failed"] > 0 || tot["tests"] == 0)
  }' "$OUT/test-cu.txt" | tee "$OUT/summary.txt"
exit "${PIPESTATUS[0]}"
