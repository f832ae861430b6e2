"""In-memory adapters: the same semantics as DynamoDB's, for fast tests and simulation."""
