"""`capacity find`: the highest arrival rate that meets a scenario's SLOs, by short real runs.

`search` (pure) decides the next rate from the probes so far: bracket (steered by the CPU
each service spent per request), then bisect, re-probing near the boundary; `probe` derives
each probe's open-model scenario and runs it through `capacity.runner.run_scenario`;
`result` turns the probes into the answer (capacity, interval, first bottleneck) and
`render` writes find.json, find.html and find.md.
"""
