"""The PostgreSQL store: a connection pool, advisory-free leases with fencing tokens."""
