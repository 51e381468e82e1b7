"""Training: attribute-CNN pretraining, memory prototypes, the AMNet triplet loop, training checkpoints."""
