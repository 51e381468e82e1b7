"""Operations on MLflow and Kubernetes: ``tracking`` (runs, lineage, compare), ``registry`` (servable model,
model URIs, champion, gate) and ``cluster`` (Kubeflow Trainer TrainJobs)."""
