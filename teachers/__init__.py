"""Cross-encoder teachers: fine-tuning, ensembles, calibration and batched scoring."""
