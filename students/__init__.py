"""Bi-encoder students: the Accelerate training loop, distillation losses and export."""
