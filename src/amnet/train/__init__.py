"""Training loops: attribute-CNN pretraining and AMNet triplet training (no tracking inside)."""
