"""The embedded reference ERP stack: stand-in services and their supervisor.

`supervisor` starts/stops one OS process per service; each stand-in is its own module
(`gateway`, `masterdata`, `rules_service`, `workflow_service`), sharing `httpkit` and `tuning`.
"""
