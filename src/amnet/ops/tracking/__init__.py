"""MLflow tracking: stage runs (``runs``), lineage between runs and artifacts (``lineage``), ``amnet runs compare``."""
