#!/usr/bin/env bash
# Session 19, call 3 (the machine of call 2, still warm; the command as run): the dropout-core
# table on exe-flashattn (4100319: the masked forward's uniform scan answer + chunk anchors +
# the forward order) and exe-a (95d1e97: the uniform scan answer only), 40 ms budgets.
W=$OUT; for r in new a; do b=.gpu/bin/exe-$r; [ $r == new ] && b=.gpu/bin/exe-flashattn; timeout 42 $b bench-masks --only dropout-core --call s19c3-$r --out $W/dropout-$r.json --budget-ms 40 > $W/dropout-$r.log 2>&1; echo "$r rc=$?"; grep -E "^fwd .*(flash  |dropout-0.1  |dropout-0.1-causal  |causal  )" $W/dropout-$r.log | awk '{printf "%s/%s %s %s %s | ", $2, $3, $5, $6, $8} END {print ""}'; done
