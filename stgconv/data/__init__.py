"""Dataset classes per modality."""
