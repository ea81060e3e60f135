"""Parameter-efficient adaptation (issue 4), the parts bench_finetune.py does not cover.

``adapters``: four LoRA adapters fitted on four tasks (SST-2 sentiment and three Banking77 subsets), then
loaded together on one all-MiniLM-L6-v2 with ``graftkit.load_adapters``: tensor memory of the shared model
against one plain model, process RSS, and each adapter's predictions against that adapter loaded alone.

``efficientnet``: EfficientNet-Lite0 on a seeded CIFAR-10 subset: linear probe, LoRA (peft's Conv2d LoRA on
the 1×1 convolutions) and full fine-tuning — accuracy, time, trained share, artifact size
(``bench_media_strategies.py cifar10`` with those three strategies).

    python bench/bench_peft.py adapters
    python bench/bench_peft.py efficientnet --per-class 50 --epochs 2
(the SST-2 / Banking77 strategy table: python bench/bench_finetune.py strategies --variants peft ...)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import load_split  # noqa: E402
from common import Clock, machine, save  # noqa: E402


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


def efficientnet(args) -> None:
    """Linear probe, LoRA and full fine-tuning of EfficientNet-Lite0 on the CIFAR-10 subset (own processes)."""
    from bench_media_strategies import compare

    compare(argparse.Namespace(data="cifar10", strategies=["linear-probe", "lora", "full"], backbone=None,
                               per_class=args.per_class, test_per_class=args.test_per_class, epochs=args.epochs,
                               batch_size=16, seed=args.seed, threads=args.threads, params="{}"))


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
