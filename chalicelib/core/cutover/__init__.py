"""The cutover's decisions (CONTRACT section 9), as pure functions over plain data: one module per phase.

Moving Pro billing from the cells to the edge is safe when every bucket is
billed by exactly one side: the cells bill every bucket before their
`billed_through`, the edge every bucket from `BILL_FROM` (= T) once live. So
the seam is right when, for every cell, `billed_through == T` and the cell's
billers have stopped; `billed_through > T` bills [T, billed_through) twice,
`billed_through < T` with the billers stopped bills [billed_through, T) by
nobody. Everything here decides from facts the shell gathered
(`services/cutover_ops.py`); nothing here talks to DynamoDB, Stripe or a log,
nor words a command line (the CLI's text is the entry point's).

checks.py   a check, exit codes, the stage's flags as read
preflight.py  catalog, webhook endpoint, the parity soak, flags
plan.py     T, the next quiet boundary; the flags each step sets
drain.py    every cell billed through T, nothing pending
verify.py   meter events flowing, cells stood down, the seam per bucket
rollback.py what to cancel, demote or credit by hand
"""
