"""ONNX export (issue 15): an all-MiniLM-L6-v2 linear probe fitted on a seeded Banking77 subset, exported as fp32
and as int8 (onnxruntime dynamic quantisation); on Banking77 test rows, in one run: agreement of each ONNX graph's
predictions with PyTorch's, accuracy of all three, max |probability difference|, and predict throughput (rows/s,
batch 32, the same rows) of PyTorch, onnxruntime fp32 and int8.

    python bench/bench_onnx.py --per-class 10 --test-rows 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Clock, load, machine, save, shared


def main() -> None:
    import torch

    import graftkit as gk
    from graftkit.export import export_onnx, load_onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    print(load(), "at the start", flush=True)
    train = pd.read_csv(shared("data", "banking77", "train.csv"))
    train = train.groupby("category").sample(n=args.per_class, random_state=args.seed).reset_index(drop=True)
    test = pd.read_csv(shared("data", "banking77", "test.csv")).sample(args.test_rows, random_state=args.seed)
    texts, truth = test["text"].tolist(), test["category"].tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "probe"
        with Clock() as clock:
            gk.Graft("all-MiniLM-L6-v2", progress=False, use_cache=False, seed=args.seed).fit(
                gk.load_data(train, text="text", label="category")).save(model_dir)
        print(f"linear-probe fitted on {len(train)} rows in {clock.wall:.0f} s", flush=True)
        check_rows = train["text"].sample(64, random_state=1).tolist()  # export check: training texts
        checks = {}
        for name, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
            with Clock() as clock:
                checks[name] = export_onnx(model_dir, Path(tmp) / name.replace(" ", "-"), quantize=quantize,
                                           check_data=check_rows)
            size = (Path(tmp) / name.replace(" ", "-") / "model.onnx").stat().st_size / 2 ** 20
            checks[name].update(export_s=round(clock.wall, 1), graph_mb=round(size, 1))
            print(name, checks[name], flush=True)
        runners = {"pytorch": gk.load(model_dir, progress=False, use_cache=False),
                   "onnx fp32": load_onnx(Path(tmp) / "onnx-fp32"), "onnx int8": load_onnx(Path(tmp) / "onnx-int8")}
        runners["pytorch"].batch_size = 32
        results = {}
        for name, runner in runners.items():
            runner.predict(texts[:32])  # warm-up
            started = time.perf_counter()
            outputs = runner.outputs(texts)
            seconds = time.perf_counter() - started
            labels = runner.task_.decode(outputs, runner.calibration_ if name != "pytorch" else
                                         runner.active_calibration())
            results[name] = (outputs, labels, seconds)
        reference_outputs, reference_labels, _ = results["pytorch"]
        for name, (outputs, labels, seconds) in results.items():
            rows.append({"runtime": name, "rows": len(texts), "accuracy": round(float(np.mean(
                [a == b for a, b in zip(labels, truth)])), 4),
                "agreement_with_pytorch": round(float(np.mean([a == b for a, b in zip(labels, reference_labels)])), 4),
                "max_abs_prob_diff": float(np.abs(outputs - reference_outputs).max()),
                "rows_per_s": round(len(texts) / seconds, 1), **({k: checks[name][k] for k in
                                                                  ("export_s", "graph_mb")} if name in checks else {})})
            print(rows[-1], flush=True)
    print("\n| runtime | test rows | accuracy | agreement with PyTorch | max abs prob diff | rows/s | graph MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['rows']} | {r['accuracy']:.4f} | {r['agreement_with_pytorch']:.4f} | "
              f"{r['max_abs_prob_diff']:.2e} | {r['rows_per_s']} | {r.get('graph_mb', '–')} |")
    save("onnx", {"machine": machine(), "args": vars(args), "runs": rows, "checks": checks})


if __name__ == "__main__":
    main()
