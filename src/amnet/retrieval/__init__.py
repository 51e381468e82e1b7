"""Retrieval: gallery featurization, manipulated-query evaluation, metrics, the search index, examples."""
