"""Pure analysis of run folders: summary, validity, steps, capacity models, sweep and gate.

Nothing here reads or writes files: callers hand in slice records, resource frames and run
metadata from `capacity.runfolder`. Percentiles come from `capacity.runfolder.histograms`, SLO
limits are judged by `capacity.slos`, and verdicts map to exit codes in `capacity.errors`.
"""
