"""The spend authority: the gate's rules, and the one durable store of approvals, holds and spends.

``store.SpendStore.start_attempt`` is the only code that answers "may this attempt start?".
"""
