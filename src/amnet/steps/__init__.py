"""Stage entry points: ``run_step(...)`` for components, ``main(argv)`` for ``amnet step X`` and
``python -m amnet.steps.X``. Each resolves its config, runs the stage function and, when
``MLFLOW_TRACKING_URI`` is set, logs into an MLflow run nested under the pipeline's parent run."""
