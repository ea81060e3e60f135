"""Fine-tuned weights in a model directory, in safetensors.

A transformers backbone is written with ``save_pretrained`` (plus its tokenizer / processor) into
``backbone/``, so the plain ecosystem loads it without graftkit::

    from transformers import AutoModel
    encoder = AutoModel.from_pretrained("MODEL_DIR/backbone")

A parameter-efficient fit (lora, ia3, adapters, bitfit) writes only what it trained (``adapter/`` for
the peft strategies, which plain ``PeftModel.from_pretrained(base, "MODEL_DIR/adapter")`` loads, or
``adapter.safetensors``; see ``training/efficient.py``), not a copy of the base model,

and the head is ``head.safetensors`` (``weight``, ``bias``: ``logits = pooled @ weight.T + bias``, pooled as
``manifest.json`` → ``backbone.settings`` says). Any other backbone's state dict goes to
``backbone.safetensors``. ``graftkit.load`` rebuilds the pretrained backbone (verifying its hashes),
then loads the fine-tuned weights over it, so predictions are exactly those of the fitted model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from graftkit.errors import ArtifactError

BACKBONE_DIR = "backbone"
BACKBONE_FILE = "backbone.safetensors"
PROCESSOR_ATTRIBUTES = ("tokenizer", "processor", "image_processor", "feature_extractor")


def _is_transformers_model(model) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def save_finetuned(graft, staging: Path) -> list[str]:
    """Write the fine-tuned backbone into ``staging``; returns the files written, relative to it."""
    from safetensors.torch import save_model

    if graft.task_.generative:  # only what trained: the adapter, or the trained parameters (training/seq2seq.py)
        from graftkit.training.seq2seq import save_trained

        return save_trained(graft, staging)
    if getattr(graft, "adaptation_", None) is not None:
        from graftkit.training.efficient import save_adaptation

        return save_adaptation(graft, staging)
    backbone = graft.backbone_
    model = backbone.model
    if _is_transformers_model(model):
        folder = staging / BACKBONE_DIR
        model.save_pretrained(folder)
        for attribute in PROCESSOR_ATTRIBUTES:
            processor = getattr(backbone, attribute, None)
            if processor is not None and hasattr(processor, "save_pretrained"):
                processor.save_pretrained(folder)
                break
        return sorted(p.relative_to(staging).as_posix() for p in folder.rglob("*") if p.is_file())
    save_model(model, str(staging / BACKBONE_FILE))
    return [BACKBONE_FILE]


def load_finetuned(graft, path: Path, adapter_name: str = "default") -> None:
    """Load the fine-tuned weights of the model in ``path`` over ``graft``'s (pretrained) backbone."""
    from safetensors.torch import load_model

    from graftkit.training.efficient import ADAPTER_FILE, PEFT_DIR, load_adaptation

    if graft.task_.generative:
        from graftkit.training.seq2seq import load_trained

        load_trained(graft, path)
        return
    if (path / PEFT_DIR).is_dir() or (path / ADAPTER_FILE).is_file():
        load_adaptation(graft, path, adapter_name=adapter_name)
        graft.finetuned_ = True
        return
    model = graft.backbone_.model
    folder = path / BACKBONE_DIR
    try:
        if folder.is_dir():
            fresh = type(model).from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
            model.load_state_dict(fresh.state_dict())
        elif (path / BACKBONE_FILE).is_file():
            load_model(model, str(path / BACKBONE_FILE))
        else:
            raise ArtifactError(f"{path}: the fine-tuned backbone weights ({BACKBONE_DIR}/ or {BACKBONE_FILE}) are "
                                "missing; the model directory is incomplete, refit it")
    except (RuntimeError, OSError) as exc:
        raise ArtifactError(f"{path}: the fine-tuned backbone weights do not fit backbone "
                            f"{graft.backbone!r} ({str(exc).splitlines()[0]}); refit the model") from None
    model.to(graft.backbone_.device).eval()
    graft.finetuned_ = True
