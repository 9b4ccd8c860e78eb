"""Aura Router: the domain (settings, money, auth, wire formats, providers, ledger).

This package knows nothing of the actor runtime in `actors/`; only the transports and
the command line reach into `actors.root`.
"""
