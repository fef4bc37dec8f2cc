"""Measuring across processes: collectives with timeouts, agreement on errors, and sharded engines (FSDP1, FSDP2, ZeRO-3)."""
