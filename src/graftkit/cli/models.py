"""``graftkit models``: what backbones this machine can use, and where each comes from."""

from __future__ import annotations

import argparse
from pathlib import Path

from graftkit.backbones.registry import family_of
from graftkit.backbones.sources import PACKAGED
from graftkit.cli.options import emit_json


def register(commands) -> None:
    models = commands.add_parser(
        "models", help="list the backbones available on this machine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit models --json")
    models.add_argument("--json", action="store_true", help="print the list as JSON on stdout")
    models.set_defaults(run=run_models)


def available_models() -> list[dict]:
    """Packaged offline models (installed or not) and models in the Hugging Face cache."""
    rows = []
    for entry in sorted(PACKAGED.values(), key=lambda e: e.name):
        installed = entry.installed()
        rows.append({"name": entry.name, "source": "package", "family": entry.family, "installed": installed,
                     "where": str(entry.path()) if installed else entry.pip, "licence": entry.licence})
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception:  # no cache folder yet, or one the scanner cannot read: nothing cached to list
        cache = None
    for repo in sorted(cache.repos, key=lambda r: r.repo_id) if cache else []:
        if repo.repo_type == "model":
            revisions = sorted(r.commit_hash[:12] for r in repo.revisions)
            newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
            family = family_of(Path(newest.snapshot_path)) if newest is not None else None
            rows.append({"name": repo.repo_id, "source": "hub-cache", "family": family or "hf", "installed": True,
                         "where": str(repo.repo_path), "revisions": revisions, "licence": None})
    return rows


def run_models(args) -> int:
    rows = available_models()
    if args.json:
        emit_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        state = "ready" if row["installed"] else "not installed"
        print(f"{row['name']:<{width}}  {row['source']:<9}  {state:<13}  {row['where']}")
    print("\nAlso: any local directory written by save_pretrained, or any Hub id (downloaded when online).")
    return 0
