"""Capacity over time: the results store, run history with change points, the history gate.

`store` keeps every completed run's summary with its environment fingerprint (SQLite by
default, PostgreSQL by URL); `fingerprint` says what a run was measured on; `record` puts run
folders into the store; `changepoints` (pure) finds shifts in a series; `series` (pure) builds
per-operation and per-service series that break where the fingerprint changes; `render`
writes the history as HTML, Markdown and JSON.
"""
