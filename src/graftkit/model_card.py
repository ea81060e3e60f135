"""The human-readable model card (README.md) written into every artifact, from the manifest alone."""

from __future__ import annotations


def _metric_lines(metrics: dict) -> list[str]:
    lines = []
    for split, values in metrics.items():
        if isinstance(values, dict) and "accuracy" in values:
            lines.append(f"| {split} | {values.get('n', '')} | {values['accuracy']:.4f} | {values['macro_f1']:.4f} |")
    return lines


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
