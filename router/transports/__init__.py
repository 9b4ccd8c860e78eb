"""Transports: where requests enter (HTTP, SSE, websocket, admin) and leave as responses."""
