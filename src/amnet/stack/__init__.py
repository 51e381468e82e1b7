"""The local dev stack: a SeaweedFS S3 gateway and an MLflow tracking server on loopback (``amnet stack``)."""
