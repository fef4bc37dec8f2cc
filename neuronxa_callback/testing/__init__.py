"""Tiny offline stand-ins for testing and benchmarking code that uses this package (no download, seconds to build):
``tiny.tiny_model`` / ``tiny.tiny_tokenizer`` (a random decoder of any supported architecture and a small BPE tokenizer),
``comet.build_tiny_comet`` (a small COMET / CometKiwi checkpoint on disk). Their scores mean nothing; their shapes,
code paths and determinism are real."""
