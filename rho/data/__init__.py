"""Data layer: corpora, tokenization and memory-mapped token shards."""
