"""Parameter-efficient adaptation (issue 4), the parts bench_finetune.py does not cover.

``adapters``: four LoRA adapters fitted on four tasks (SST-2 sentiment and three Banking77 subsets), then
loaded together on one all-MiniLM-L6-v2 with ``graftkit.load_adapters``: tensor memory of the shared model
against one plain model, process RSS, and each adapter's predictions against that adapter loaded alone.

``efficientnet``: EfficientNet-Lite0 on a seeded CIFAR-10 subset: linear probe, LoRA (peft's Conv2d LoRA on
the 1×1 convolutions) and full fine-tuning — accuracy, time, trained share, artifact size.

    python bench/bench_peft.py adapters
    python bench/bench_peft.py efficientnet --per-class 50 --epochs 2
(the SST-2 / Banking77 strategy table: python bench/bench_finetune.py strategies --variants peft ...)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import load_split  # noqa: E402
from common import Clock, machine, save, shared  # noqa: E402


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def adapters(args) -> None:
    import torch

    import graftkit as gk
    from graftkit.adapters import tensor_bytes

    torch.set_num_threads(args.threads)
    sst2, sst2_test = load_split("sst2", 0, args.rows, 200, args.seed)
    b77, b77_test = load_split("banking77", 0, 0, 0, args.seed)
    categories = sorted(b77["label"].unique())
    tasks = {"sentiment": (sst2, sst2_test)}
    for i in range(3):  # three intent tasks over disjoint sets of 10 intents
        chosen = categories[10 * i:10 * i + 10]
        train = b77[b77["label"].isin(chosen)].groupby("label").sample(args.rows // 10, random_state=args.seed)
        tasks[f"intents_{i}"] = (train, b77_test[b77_test["label"].isin(chosen)])
    folder = Path(tempfile.mkdtemp(prefix="bench-peft-"))
    dirs, fits = {}, {}
    for name, (train, _) in tasks.items():
        with Clock() as clock:
            model = gk.Graft(args.backbone, strategy="lora", epochs=args.epochs, progress=False, seed=args.seed,
                             batch_size=32).fit(gk.load_data(train, text="text", label="label"))
        dirs[name] = model.save(folder / name)
        fits[name] = {"fit_s": round(clock.wall, 1), "rows": len(train),
                      "adapter_mb": round(sum(p.stat().st_size for p in (dirs[name] / "adapter").rglob("*")) / 1e6, 3)}
        print(name, fits[name], flush=True)
    alone = {}
    for name, path in dirs.items():
        model = gk.load(path, progress=False)
        alone[name] = model.predict_proba(gk.load_data(tasks[name][1], text="text", label="label", require_label=False))
        one_model_bytes = tensor_bytes(model.backbone_.model) - sum(
            p.numel() * p.element_size() for n, p in model.backbone_.model.named_parameters() if "lora_" in n)
        del model
    rss_before = _rss_mb()
    shared_set = gk.load_adapters(dirs, progress=False)
    rss_after = _rss_mb()
    same = {}
    for name in [*dirs, *reversed(list(dirs))]:  # switch back and forth
        proba = shared_set.predict_proba(name, gk.load_data(tasks[name][1], text="text", label="label",
                                                            require_label=False))
        same[name] = float(np.abs(proba - alone[name]).max())
    result = {"machine": machine(), "backbone": args.backbone, "fits": fits,
              "one_model_tensor_mb": round(one_model_bytes / 1e6, 3),
              "four_adapters_tensor_mb": round(shared_set.memory_bytes() / 1e6, 3),
              "memory_ratio": round(shared_set.memory_bytes() / one_model_bytes, 4),
              "rss_mb_for_load_adapters": round(rss_after - rss_before, 1),
              "max_abs_probability_difference_vs_alone": same}
    print(json.dumps(result, indent=1))
    save("peft_adapters", result)


def _cifar(per_class: int, test_per_class: int, seed: int, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = {}
    with zipfile.ZipFile(shared("data", "cifar10_jpg", "cifar10_jpg.zip")) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        for split, count in (("train", per_class), ("test", test_per_class)):
            by_class: dict[str, list[str]] = {}
            for n in names:
                parts = n.split("/")
                if parts[-3] == split:
                    by_class.setdefault(parts[-2], []).append(n)
            chosen = [n for label in sorted(by_class) for n in rng.choice(sorted(by_class[label]), count, replace=False)]
            archive.extractall(folder, members=chosen)
            frames[split] = pd.DataFrame({"image": [str(folder / n) for n in chosen],
                                          "label": [n.split("/")[-2] for n in chosen]})
    return frames["train"], frames["test"]


def efficientnet(args) -> None:
    import torch

    import graftkit as gk

    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench-peft-cifar-"))
    train, test = _cifar(args.per_class, args.test_per_class, args.seed, folder)
    train_t, test_t = (gk.load_data(f, image="image", label="label") for f in (train, test))
    rows = []
    for strategy, params in (("linear-probe", {}), ("lora", {"epochs": args.epochs}),
                             ("full", {"epochs": args.epochs})):
        with Clock() as clock:
            model = gk.Graft("efficientnet-lite0", strategy=strategy, progress=False, seed=args.seed, batch_size=32,
                             **params).fit(train_t)
        accuracy = model.evaluate(test_t, curves=False)["accuracy"]
        with tempfile.TemporaryDirectory() as out:
            saved = model.save(Path(out) / "m")
            size = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()) / 1e6
        counts = model.parameter_counts()
        rows.append({"strategy": strategy, "accuracy": accuracy, "fit_s": round(clock.wall, 1),
                     "trainable": counts["trainable"], "share": counts["share"], "artifact_mb": round(size, 3),
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| strategy | test accuracy | fit s | trained (share) | artifact MB |", "|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['accuracy']:.4f} | {r['fit_s']} | {r['trainable']:,} ({100 * r['share']:.2f}%) "
              f"| {r['artifact_mb']:.2f} |" for r in rows]
    print("\n".join(lines))
    save("peft_efficientnet", {"machine": machine(), "settings": vars(args), "rows": rows, "table": lines})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["adapters", "efficientnet"])
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=300, help="adapters: training rows per task")
    parser.add_argument("--per-class", type=int, default=50, help="efficientnet: CIFAR-10 training images per class")
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"adapters": adapters, "efficientnet": efficientnet}[args.mode](args)


if __name__ == "__main__":
    main()
