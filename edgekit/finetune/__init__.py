"""Training stages that recover accuracy after a structural change (`finetune`)."""
