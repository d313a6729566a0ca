"""The accounts context's domain: investor profiles, the cash ledger and positions (pure)."""
