"""Batched feature extraction from frozen backbones and the content-addressed feature cache."""
