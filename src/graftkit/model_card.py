"""The human-readable model card (README.md) written into every artifact, from the manifest alone."""

from __future__ import annotations


def _metric_lines(metrics: dict) -> list[str]:
    lines = []
    for split, values in metrics.items():
        if isinstance(values, dict) and "accuracy" in values:
            lines.append(f"| {split} | {values.get('n', '')} | {values['accuracy']:.4f} | {values['macro_f1']:.4f} |")
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


def _calibration_lines(manifest: dict) -> list[str]:
    """What ``predict_proba`` does to the head's logits: the fitted temperature and where it came from."""
    calibration = manifest.get("calibration")
    if not calibration:
        return ["Probabilities are the head's own (no temperature was fitted; `calibrate=False`).", ""]
    if calibration["temperature"] == 1.0:
        return [f"Probabilities are the head's own: temperature scaling was {calibration['status']}.", ""]
    return [f"Probabilities are calibrated: `predict_proba` divides the logits by T = {calibration['temperature']:.4f} "
            f"(temperature scaling, Guo et al. 2017), fitted on {calibration['fitted_on']}; held-out ECE there "
            f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}. `manifest.json` → `calibration`.", ""]


def render_card(manifest: dict) -> str:
    source = manifest["backbone"]["source"]
    labels = manifest["task"]["labels"]
    shown = ", ".join(f"`{label}`" for label in labels[:20]) + (" ..." if len(labels) > 20 else "")
    pinned = f"revision `{source['revision']}`" if source.get("revision") else "weights " + ", ".join(
        f"`{name}` sha256 `{digest[:12]}…`" for name, digest in source.get("files", {}).items())
    lines = [
        "# graftkit model",
        "",
        f"Task: {manifest['task']['kind']} over {len(labels)} classes ({shown}), "
        f"input: {manifest['input']['modality']} column `{manifest['input']['column']}`.",
        "",
        f"- Backbone: `{source['spec']}` ({source['kind']}; {pinned}; licence: {source.get('licence') or 'see the backbone'})",
        f"- Strategy: `{manifest['strategy']['name']}` with head `{manifest['head']['kind']}` "
        f"({', '.join(f'{k}={v}' for k, v in manifest['head'].items() if k != 'kind')})",
        f"- Trained on {manifest['data']['rows']} rows of `{manifest['data']['source']}` "
        f"(data fingerprint `{manifest['data']['fingerprint'][:16]}`), seed {manifest['seed']}",
        f"- Written {manifest['created']} by graftkit {manifest['versions'].get('graftkit')}",
        "",
        "## Metrics",
        "",
        "| split | n | accuracy | macro-F1 |",
        "|---|---|---|---|",
        *_metric_lines(manifest["metrics"]),
        "",
        "Training-split figures are optimistic; trust the held-out ones.",
        "",
        *_calibration_lines(manifest),
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
