"""Interactive search over a featurized gallery: the Searcher API, `amnet search`, `amnet serve` and its page."""
