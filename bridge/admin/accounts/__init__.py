"""Accounts and the settings people manage at run time: who a bearer token is, the
subscriptions made through the API (validated, sealed, applied on every instance),
the accounts and their tokens, and the audit trail."""
