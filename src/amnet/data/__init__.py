"""Data layer: dataset contract, synthetic generator, importers, validation, splits, shards, triplets."""
