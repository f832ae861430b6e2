"""Pure core: no I/O, no clocks, no logging. Every function here is deterministic."""
