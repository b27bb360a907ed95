"""The SQLite store: one writer thread, readers on their own connections."""
