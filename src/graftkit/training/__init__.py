"""The training engine of every trainable strategy (finetune, full, gradual, lp-ft), on the Hugging Face
Trainer: the model wrapper (``model``), the per-batch collator (``data``), layer groups and
discriminative learning rates (``groups``), L2-SP (``regularizers``), the unfreezing schedule and
checkpoint seals (``callbacks``, ``checkpoints``), the engine itself (``engine``), ``Graft.fit``'s glue
(``fit``) and fine-tuned weights in artifacts (``artifact``). Modules are imported where used, so that
importing graftkit does not import the Trainer."""
