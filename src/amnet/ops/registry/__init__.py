"""The MLflow Model Registry: the servable searcher model, ``models:/`` URIs, the champion and the gate."""
