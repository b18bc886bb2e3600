"""Corpora: generators, readers, manifests and decoding."""
