"""Pieces of `scripts/bench`: child processes and /proc (procs), the load generator
(load), and the table / markdown report (report). Not part of the installed package."""
