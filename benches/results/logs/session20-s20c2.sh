#!/usr/bin/env bash
# Session 20, call 2 (as s20c1; its v2 run had loaded a wrong file name): dropout-core tables,
# 40 ms budgets, cubins head, v2, v1, v2 again, head again.
set -u
W=$OUT; B=.gpu/bin; C=.gpu/cubin
for f in $C/*.xz; do xz -d "$f" 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[1][:-3],\"wb\").write(lzma.open(sys.argv[1]).read())" "$f"; done
for r in head v2 v1 v2b headb; do
  c=${r%b}
  FLASHATTN_CUBIN=$C/$c.cubin timeout 45 $B/exe-flashattn bench-masks --only dropout-core --call s20c2-$r --out $W/dropout-$r.json --budget-ms 40 > $W/dropout-$r.log 2>&1; echo "$r rc=$?"
  grep -E "^fwd .*(flash  |dropout-0.1  |dropout-0.1-causal  |causal  )" $W/dropout-$r.log | awk '{printf "%s/%s %s %s %s | ", $2, $3, $5, $6, $8} END {print ""}'
done
