"""Token reduction (merging, pruning, merge-and-restore) for ViT and BERT-family encoders."""
