"""Work on a Kubernetes cluster: training on several nodes as a Kubeflow Trainer TrainJob."""
