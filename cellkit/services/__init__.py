"""The imperative shell: each service reads the store, calls the pure core, writes the store, talks HTTP."""
