"""Operations: MLflow tracking, the model registry gate, runs compare, the local S3 + MLflow stack."""
