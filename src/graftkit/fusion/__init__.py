"""Several inputs per row (issue 12): text / image / audio columns plus numeric and categorical columns fused into
one feature matrix (``featurize``) from per-column encoders (``encoders``; ``tuning``: the two-stage LoRA recipe),
a task's head on it (gradient-boosted trees by default, ``tasks/gbdt.py``), feature-group importance
(``importance``) and the classical TF-IDF + tabular baseline (``baseline``). ``model.FusionModel`` is the estimator."""

from graftkit.fusion.model import FusionModel, is_fusion_model, load_fusion

__all__ = ["FusionModel", "is_fusion_model", "load_fusion"]
