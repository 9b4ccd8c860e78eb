"""Billing backends: the ledger interface (`base`) and its implementations."""
