"""The pure core: what an intent, a state, a role and a status are, and the rules on them.

Intent parsing, the ``transitions`` state table, the reconciler's next move
(``decide``), gate verdicts, window planning, retry policy and the settings
that hold every retry and rate knob. No I/O and no client: everything here is a pure
function of its arguments (and a clock passed in), table-tested without
services. Every other side imports from here; this side imports none of them.
"""
