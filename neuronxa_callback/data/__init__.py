"""Parallel sentences: the loaders, language codes, and the packaged files (packaged/)."""
