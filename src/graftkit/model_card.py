"""The human-readable model card (README.md) written into every artifact, from the manifest alone."""

from __future__ import annotations


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metric_lines(metrics: dict, names) -> list[str]:
    lines = [f"| split | n | {' | '.join(names)} |", "|---|---|" + "---|" * len(names)]
    for split, values in metrics.items():
        if isinstance(values, dict) and names[0] in values:
            lines.append(f"| {split} | {values.get('n', '')} | " + " | ".join(_number(values.get(k)) for k in names)
                         + " |")
    return lines


def _training_lines(manifest: dict) -> list[str]:
    """The fine-tuning summary and the plain-transformers recipe, for models a trainable strategy wrote."""
    training = manifest.get("training")
    if not training:
        return []
    counts = training["parameters"]
    settings = manifest["backbone"].get("settings", {})
    lines = [
        "## Fine-tuning",
        "",
        f"{counts['trainable']:,} of {counts['total']:,} parameters trained ({100 * counts['share']:.1f}%), layer "
        f"groups {', '.join(f'`{n}`' for n in training['layer_groups'])} (input to output); {training['epochs_run']} "
        f"epoch(s) run, best validation epoch {training.get('best_epoch')} (restored); validation: "
        f"{training['validation']['source']}. Per-epoch history and optimiser groups: `manifest.json` → `training`.",
        "",
    ]
    if any(name.startswith("backbone/") for name in manifest.get("files", {})):
        lines += [
            "Without graftkit (plain transformers; pooling as in `manifest.json` → `backbone.settings`, here "
            f"`{settings.get('pooling', 'see settings')}`):",
            "",
            "```python",
            "from safetensors.torch import load_file",
            "from transformers import AutoModel",
            "encoder = AutoModel.from_pretrained(\"THIS_DIR/backbone\")   # fine-tuned weights (+ tokenizer / processor)",
            "head = load_file(\"THIS_DIR/head.safetensors\")             # logits = pooled @ head['weight'].T + head['bias']",
            "```",
            "",
        ]
    return lines


def _lineage_lines(lineage: dict | None) -> list[str]:
    """The continued pretraining a backbone directory went through (``graftkit pretrain``), base and corpus."""
    if not lineage:
        return []
    base, corpus = lineage.get("base", {}), lineage.get("corpus", {})
    weights = ", ".join(f"`{name}` sha256 `{digest[:12]}…`" for name, digest in base.get("files", {}).items()
                        if name.endswith((".safetensors", ".bin", ".pt", ".pth")))
    head = lineage.get("mlm_head", {})
    return [f"- Continued pretraining (masked LM) of base `{base.get('spec')}` ({base.get('kind')}; {weights}) on "
            f"{corpus.get('documents')} documents of `{corpus.get('source')}` (corpus fingerprint "
            f"`{str(corpus.get('fingerprint'))[:16]}`), {lineage.get('steps')} steps"
            f"{', whole-word masking' if lineage.get('settings', {}).get('whole_word_mask') else ''}"
            f"{'; MLM head newly initialised (decoder tied to the embeddings)' if head.get('initialised') else ''}"]


def render_card(manifest: dict) -> str:
    from graftkit.tasks import task_from_dict

    task = task_from_dict(manifest["task"])
    source = manifest["backbone"]["source"]
    pinned = f"revision `{source['revision']}`" if source.get("revision") else "weights " + ", ".join(
        f"`{name}` sha256 `{digest[:12]}…`" for name, digest in source.get("files", {}).items())
    lines = [
        "# graftkit model",
        "",
        f"Task: {task.describe()}, input: {manifest['input']['modality']} column `{manifest['input']['column']}`.",
        "",
        f"- Backbone: `{source['spec']}` ({source['kind']}; {pinned}; licence: {source.get('licence') or 'see the backbone'})",
        *_lineage_lines(source.get("lineage")),
        f"- Strategy: `{manifest['strategy']['name']}` with head `{manifest['head']['kind']}` "
        f"({', '.join(f'{k}={v}' for k, v in manifest['head'].items() if k != 'kind')})",
        f"- Trained on {manifest['data']['rows']} rows of `{manifest['data']['source']}` "
        f"(data fingerprint `{manifest['data']['fingerprint'][:16]}`), seed {manifest['seed']}",
        f"- Written {manifest['created']} by graftkit {manifest['versions'].get('graftkit')}",
        "",
        "## Metrics",
        "",
        *_metric_lines(manifest["metrics"], task.headline),
        "",
        "Training-split figures are optimistic; trust the held-out ones.",
        "",
        task.describe_calibration(manifest.get("calibration")),
        "",
        *_training_lines(manifest),
        "## Use",
        "",
        "```python",
        "import graftkit as gk",
        "model = gk.load(\"THIS_DIR\")",
        "model.predict([...])",
        "```",
        "",
        "or `graftkit predict THIS_DIR data.csv`. The exact settings are in `manifest.json`.",
        "",
    ]
    return "\n".join(lines)
