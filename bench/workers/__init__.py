"""Worker-side modules of the peers (each imported only inside that peer's worker process)."""
