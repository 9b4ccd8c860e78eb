"""The runtime: actors, supervisors, the per-request pipeline and the root nursery.

`actors` imports `router` (the domain); `router` never imports `actors`, except the
transports, which are the edge where requests enter the runtime.
"""
