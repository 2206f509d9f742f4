#!/usr/bin/env bash
# Session 19, call 4 (same machine, warm; the command as run): the dropout-core table on
# exe-head (1b46307, the landed code) and exe-flashattn (4100319) again, 40 ms budgets.
W=$OUT; for r in head new; do b=.gpu/bin/exe-$r; [ $r == new ] && b=.gpu/bin/exe-flashattn; timeout 25 $b bench-masks --only dropout-core --call s19c4-$r --out $W/dropout-$r.json --budget-ms 40 > $W/dropout-$r.log 2>&1; echo "$r rc=$?"; grep -E "^fwd .*(flash  |dropout-0.1  |dropout-0.1-causal  |causal  )" $W/dropout-$r.log | awk '{printf "%s/%s %s %s %s | ", $2, $3, $5, $6, $8} END {print ""}'; done
