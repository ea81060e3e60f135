"""Speed close to the hardware (issue 17), each comparison measured side by side in one run.

audio: FSDD spoken digits with the Whisper tiny.en encoder (../shared/models/whisper-tiny.en), the 30 s padded
window against each clip's own length (rounded up to whole seconds). The same clips are embedded by both in
alternating chunks (the order flips per chunk), so a busy machine slows both alike; then a leave-one-speaker-out
logistic-regression probe (graftkit's LogRegHead, C by 5-fold CV) on each feature set.

    python bench/bench_speed.py audio --per-digit 10        # 5 speakers x 10 digits x 10 takes = 500 clips

images: CIFAR-10 JPEGs (a seeded stratified subset of ../shared/data/cifar10_jpg) with EfficientNet-Lite0 at 224 x 224:
graftkit's extraction decoding in the main process, graftkit's extraction with decoding worker processes, and a
plain PyTorch loop over the same files (PIL decode, bicubic resize, the same normalisation, the package's own
batched forward in inference mode), once NCHW and once with channels_last input (graftkit's choice), alternating
per chunk; each as images/s and as a share of this CPU's measured float32 GEMM throughput (a 2048 x 2048 matmul,
same threads, same run) given the model's FLOPs per image (torch's FlopCounterMode).
text: all-MiniLM-L6-v2 on SST-2 sentences, graftkit's extraction on PyTorch, on onnxruntime (the exported embed
graph, ``extract_runtime="onnx"``) and on its int8 quantisation (``onnx-int8``; both exported and checked before the
clock starts) against sentence-transformers' encode (same batch size, alternating per chunk), each with its share
of the same GEMM peak; each onnxruntime arm's max |diff| and min / mean cosine against PyTorch's over every
sentence, and whether the probe's accuracy holds: graftkit's LogRegHead fitted on the timed sentences' features of
each runtime, scored on the 872 SST-2 dev sentences embedded by the same runtime.

int8-recipes: how the int8 graph of ``onnx-int8`` was chosen. The fp32 MiniLM graph quantised three ways (every
MatMul per tensor; every MatMul per output channel; per channel with the feed-forward down-projections kept fp32,
graftkit's recipe, ``onnx_text.ensure_int8_graph``), each against fp32 onnxruntime: the min / mean cosine of its
features over the 872 SST-2 dev sentences, and the dev accuracy of a LogRegHead fitted on the same 2,000 seeded
training sentences embedded the same way; seconds to embed both sets, for orientation only (one pass, not alternated).

    python bench/bench_speed.py images --images 600 --chunks 4
    python bench/bench_speed.py text --sentences 2000 --chunks 4
    python bench/bench_speed.py int8-recipes --sentences 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine, save, shared

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")


def fsdd_clips(per_digit: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    recordings = shared("data", "fsdd", "recordings")
    files = [recordings / f"{digit}_{speaker}_{take}.wav"
             for speaker in SPEAKERS for digit in range(10) for take in range(per_digit)]
    return ([str(f) for f in files], np.array([int(f.name.split("_")[0]) for f in files]),
            np.array([f.name.split("_")[1] for f in files]))


def loso_accuracy(features: np.ndarray, digits: np.ndarray, speakers: np.ndarray) -> dict:
    from graftkit.tasks.heads import LogRegHead

    folds = {}
    for speaker in SPEAKERS:
        test = speakers == speaker
        head = LogRegHead.fit(features[~test], digits[~test], seed=0)  # digits 0..9: class i is column i
        folds[speaker] = float((head.logits(features[test]).argmax(1) == digits[test]).mean())
    return {"mean": float(np.mean(list(folds.values()))), "folds": folds}


def audio(args) -> dict:
    import torch

    from graftkit.backbones import load_backbone
    from graftkit.features.extract import extract_features

    torch.set_num_threads(args.threads)
    files, digits, speakers = fsdd_clips(args.per_digit)
    model = str(shared("models", "whisper-tiny.en"))
    backbones = {"padded": load_backbone(model, window="padded")}
    for bucket in args.bucket_seconds:
        backbones[f"clip-{bucket:g}s"] = load_backbone(model, window="clip", bucket_seconds=bucket)
    names = list(backbones)
    order = np.random.default_rng(0).permutation(len(files))  # chunks mix speakers and digits
    chunks = np.array_split(order, args.chunks)
    features = {name: np.empty((len(files), 384), dtype=np.float32) for name in names}
    seconds = {name: [] for name in names}
    print(f"{len(files)} FSDD clips in {len(chunks)} chunks, {args.threads} threads; {load()}", flush=True)
    for i, chunk in enumerate(chunks):
        for name in (names if i % 2 == 0 else names[::-1]):  # alternate which runs first
            start = time.perf_counter()
            features[name][chunk] = extract_features(backbones[name], [files[j] for j in chunk],
                                                     batch_size=args.batch_size, progress=False)
            seconds[name].append(time.perf_counter() - start)
        print(f"chunk {i + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.1f} s" for n in names) + f"; {load()}", flush=True)
    accuracy = {name: loso_accuracy(features[name], digits, speakers) for name in names}
    result = {"machine": machine(), "clips": len(files), "threads": args.threads, "batch_size": args.batch_size,
              "seconds": {n: float(sum(s)) for n, s in seconds.items()},
              "clips_per_s": {n: len(files) / float(sum(s)) for n, s in seconds.items()},
              "speedup_total": {n: float(sum(seconds["padded"]) / sum(seconds[n])) for n in names[1:]},
              "speedup_median_chunk": {n: float(np.median([p / c for p, c in zip(seconds["padded"], seconds[n])]))
                                       for n in names[1:]},
              "loso_accuracy": accuracy, "settings": {n: b.settings() for n, b in backbones.items()}}
    for name in names:
        acc = accuracy[name]
        speed = "" if name == "padded" else (f", {result['speedup_total'][name]:.1f}x faster than padded (median "
                                             f"chunk ratio {result['speedup_median_chunk'][name]:.1f}x)")
        print(f"{name}: {result['seconds'][name]:.1f} s ({result['clips_per_s'][name]:.1f} clips/s{speed}); "
              f"leave-one-speaker-out probe {100 * acc['mean']:.2f}% "
              f"({', '.join(f'{s} {100 * a:.1f}' for s, a in acc['folds'].items())})")
    save("speed_audio", result)
    return result


def gemm_flops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 FLOP/s of a ``size`` x ``size`` matmul (2 n^3 FLOPs) at ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def model_flops(model, batch: dict) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(**batch) if not callable(getattr(model, "embed", None)) else model.embed(batch)
    return float(counter.get_total_flops())


def _alternate(arms: dict, chunks: list) -> dict:
    seconds = {name: [] for name in arms}
    for i, chunk in enumerate(chunks):
        for name in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
            start = time.perf_counter()
            arms[name](chunk)
            seconds[name].append(time.perf_counter() - start)
        print(f"chunk {i + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.1f} s" for n in arms) + f"; {load()}", flush=True)
    return seconds


def images(args) -> dict:
    import tempfile

    import torch
    from bench_media import unpack_cifar
    from PIL import Image

    from graftkit.backbones import load_backbone
    from graftkit.features.extract import default_workers, extract_features

    torch.set_num_threads(args.threads)
    backbone = load_backbone("efficientnet-lite0")
    workers = max(1, default_workers(backbone))  # the worker arm runs at least one, whatever the default
    peak = gemm_flops(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        unpack_cifar(Path(scratch), {"train": args.images // 10})
        files = sorted(str(p) for p in Path(scratch).rglob("*.jpg"))
        rng = np.random.default_rng(0)
        chunks = np.array_split(rng.permutation(files).tolist(), args.chunks)
        per_image = model_flops(backbone, backbone.preprocess([backbone.load_item(files[0], "row 1")]))

        def plain(chunk, layout=torch.contiguous_format):
            """The package's own forward (``extract_features``, then the global average), NCHW unless ``layout``."""
            out = []
            with torch.inference_mode():
                for start in range(0, len(chunk), args.batch_size):
                    pixels = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BICUBIC),
                                                  dtype=np.float32) for f in chunk[start:start + args.batch_size]])
                    x = torch.from_numpy((pixels / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous(
                        memory_format=layout)
                    out.append(backbone.model.extract_features(x).mean(dim=(2, 3)))
            return out

        arms = {"graftkit, decode in-process": lambda c: extract_features(backbone, list(c), batch_size=args.batch_size,
                                                                          progress=False, workers=0),
                f"graftkit, {workers} decode worker(s)": lambda c: extract_features(
                    backbone, list(c), batch_size=args.batch_size, progress=False, workers=workers),
                "plain PyTorch loop (NCHW)": plain,
                "plain PyTorch loop, channels_last input": lambda c: plain(c, torch.channels_last)}
        if args.only:  # an A/B of some arms, e.g. graftkit in-process against the channels_last loop
            arms = {name: arm for i, (name, arm) in enumerate(arms.items()) if i + 1 in args.only}
        print(f"{len(files)} CIFAR-10 images in {len(chunks)} chunks, {args.threads} threads, batch {args.batch_size};"
              f" GEMM {peak / 1e9:.1f} GFLOP/s; EfficientNet-Lite0 {per_image / 1e9:.3f} GFLOP per image; {load()}",
              flush=True)
        seconds = _alternate(arms, chunks)
    return _report("speed_images", "images", len(files), seconds, per_image, peak, args)


def text(args) -> dict:
    import torch
    from common import sst2_frame
    from sentence_transformers import SentenceTransformer

    from graftkit.backbones import load_backbone
    from graftkit.features.extract import extract_features
    from graftkit.features.runtime import frozen_runtime
    from graftkit.tasks.heads import LogRegHead

    torch.set_num_threads(args.threads)
    backbone = load_backbone("all-MiniLM-L6-v2")
    runtimes = {"graftkit onnxruntime": frozen_runtime(backbone, "onnx"),
                "graftkit onnxruntime int8": frozen_runtime(backbone, "onnx-int8")}
    reference = SentenceTransformer(backbone.source.path, device="cpu")
    train = sst2_frame()
    order = np.random.default_rng(0).permutation(len(train))[:args.sentences]
    picked, labels = train["sentence"].iloc[order].tolist(), train["label"].iloc[order].astype(int).to_numpy()
    peak = gemm_flops(args.threads)
    sample = picked[:256]
    total = 0.0
    for start in range(0, len(sample), args.batch_size):  # FLOPs of the padded batches graftkit runs
        total += model_flops(backbone, backbone.preprocess(sorted(sample, key=len)[start:start + args.batch_size]))
    per_sentence = total / len(sample)
    for name, runtime in runtimes.items():
        wanted = runtime.name
        extract_features(backbone, sample[:args.batch_size], batch_size=args.batch_size, progress=False,
                         runtime=runtime)
        if runtime.name != wanted:  # the check failed (warned): the arm would time PyTorch under another name
            raise SystemExit(f"{name} did not match PyTorch on the first batch; see the warning above")
    chunks = np.array_split(np.array(picked, dtype=object), args.chunks)
    outputs: dict[str, list] = {"graftkit": [], **{name: [] for name in runtimes}}

    def graftkit(chunk, name="graftkit"):
        outputs[name].append(extract_features(backbone, list(chunk), batch_size=args.batch_size, progress=False,
                                              runtime=runtimes.get(name)))

    arms = {"graftkit": graftkit,
            **{name: (lambda c, name=name: graftkit(c, name)) for name in runtimes},
            "sentence-transformers": lambda c: reference.encode(list(c), batch_size=args.batch_size,
                                                                show_progress_bar=False)}
    print(f"{len(picked)} SST-2 sentences in {len(chunks)} chunks, {args.threads} threads, batch {args.batch_size}; "
          f"GEMM {peak / 1e9:.1f} GFLOP/s; MiniLM {per_sentence / 1e9:.4f} GFLOP per sentence (length-sorted "
          f"batches of a 256-sentence sample); {load()}", flush=True)
    seconds = _alternate(arms, chunks)
    dev = sst2_frame("dev")
    truth, theirs = dev["label"].astype(int).to_numpy(), np.concatenate(outputs["graftkit"])
    probe, agreement = {}, {}
    for name, chunks_out in outputs.items():  # the probe on each runtime's own features (dev: outside the clock)
        features = np.concatenate(chunks_out)
        test = extract_features(backbone, dev["sentence"].tolist(), batch_size=args.batch_size, progress=False,
                                runtime=runtimes.get(name))
        head = LogRegHead.fit(features, labels, seed=0)
        probe[name] = float((head.logits(test).argmax(1) == truth).mean())
        print(f"{name}: SST-2 dev accuracy of the probe on {len(features)} sentences {probe[name]:.4f}")
        if name in runtimes:
            cosine = (features * theirs).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(theirs, axis=1))
            agreement[name] = {"max_abs_diff": float(np.abs(features - theirs).max()),
                               "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
            print(f"{name} against PyTorch features: max |diff| {agreement[name]['max_abs_diff']:.1e}, min cosine "
                  f"{agreement[name]['min_cosine']:.7f}, mean {agreement[name]['mean_cosine']:.7f}")
    peer = seconds["sentence-transformers"]
    versus = {arm: {"total": float(sum(peer) / sum(s)), "median_chunk": float(np.median(np.divide(peer, s)))}
              for arm, s in seconds.items() if arm != "sentence-transformers"}
    for arm, ratio in versus.items():
        print(f"{arm} against sentence-transformers: {ratio['total']:.2f}x in total, {ratio['median_chunk']:.2f}x "
              "by the median chunk")
    return _report("speed_text", "sentences", len(picked), seconds, per_sentence, peak, args,
                   extra={"vs_torch": agreement, "probe_dev_accuracy": probe, "vs_sentence_transformers": versus})


def int8_recipes(args) -> dict:
    import tempfile

    import torch
    from common import sst2_frame

    from graftkit.backbones import load_backbone, onnx_text
    from graftkit.features.extract import extract_features
    from graftkit.features.runtime import frozen_runtime
    from graftkit.tasks.heads import LogRegHead

    torch.set_num_threads(args.threads)
    backbone = load_backbone("all-MiniLM-L6-v2")
    fp32 = onnx_text.ensure_graph(backbone, frozen_runtime(backbone, "onnx").folder)
    train, dev = sst2_frame(), sst2_frame("dev")
    order = np.random.default_rng(0).permutation(len(train))[:args.sentences]
    texts = {"train": train["sentence"].iloc[order].tolist(), "dev": dev["sentence"].tolist()}
    labels = {"train": train["label"].iloc[order].astype(int).to_numpy(), "dev": dev["label"].astype(int).to_numpy()}

    class Graph:  # what extract_features calls: ``embed(batch)``
        def __init__(self, path):
            self.embed = onnx_text.OnnxEmbedder(path)

    def measure(path) -> dict:
        started, runtime = time.perf_counter(), Graph(path)
        features = {part: extract_features(backbone, texts[part], batch_size=args.batch_size, progress=False,
                                           runtime=runtime) for part in texts}
        head = LogRegHead.fit(features["train"], labels["train"], seed=0)
        accuracy = float((head.logits(features["dev"]).argmax(1) == labels["dev"]).mean())
        return {"features": features["dev"], "dev_accuracy": accuracy, "seconds": time.perf_counter() - started}

    recipes = {"every MatMul, per tensor": {"keep_fp32": [], "per_channel": False},
               "every MatMul, per channel": {"keep_fp32": [], "per_channel": True},
               "per channel, down-projections fp32 (graftkit)": {"keep_fp32": onnx_text.down_projections(fp32),
                                                                 "per_channel": True}}
    reference = measure(fp32)
    print(f"fp32 onnxruntime: SST-2 dev accuracy {reference['dev_accuracy']:.4f}, {reference['seconds']:.1f} s; "
          f"{load()}", flush=True)
    results = {"machine": machine(), "sentences": args.sentences, "threads": args.threads,
               "fp32": {"dev_accuracy": reference["dev_accuracy"], "seconds": reference["seconds"]}}
    with tempfile.TemporaryDirectory() as scratch:
        for i, (name, recipe) in enumerate(recipes.items()):
            path = Path(scratch) / f"recipe{i}.onnx"
            onnx_text.quantize_int8(fp32, path, **recipe)
            got = measure(path)
            ours, theirs = got["features"], reference["features"]
            cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
            results[name] = {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
                             "dev_accuracy": got["dev_accuracy"], "seconds": got["seconds"],
                             "kept_fp32": len(recipe["keep_fp32"])}
            print(f"{name}: min cosine {cosine.min():.4f}, mean {cosine.mean():.5f}, SST-2 dev accuracy "
                  f"{got['dev_accuracy']:.4f}, {got['seconds']:.1f} s; {load()}", flush=True)
    save("int8_recipes", results)
    return results


def _report(name, unit, count, seconds, flops_per_item, peak, args, extra=None) -> dict:
    rates = {arm: count / float(sum(s)) for arm, s in seconds.items()}
    first = next(iter(seconds))
    result = {"machine": machine(), unit: count, "threads": args.threads, "batch_size": args.batch_size,
              "gemm_gflops": peak / 1e9, "gflop_per_item": flops_per_item / 1e9, "seconds": {a: float(sum(s)) for a, s
                                                                                            in seconds.items()},
              "per_s": rates, "share_of_gemm": {a: r * flops_per_item / peak for a, r in rates.items()},
              "median_chunk_ratio_to_first": {a: float(np.median([f / x for f, x in zip(seconds[first], s)]))
                                              for a, s in seconds.items()}, **(extra or {})}
    for arm, rate in rates.items():
        print(f"{arm}: {rate:.1f} {unit}/s, {100 * result['share_of_gemm'][arm]:.0f}% of the GEMM peak; "
              f"median chunk speed vs {first}: {result['median_chunk_ratio_to_first'][arm]:.2f}x")
    save(name, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audio", help="Whisper tiny.en on FSDD: padded vs own-length")
    a.add_argument("--per-digit", type=int, default=10, help="takes per speaker and digit (FSDD has 50)")
    a.add_argument("--chunks", type=int, default=6, help="alternating timing chunks")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a machine other jobs share, 2 threads lose to preemption)")
    a.add_argument("--bucket-seconds", type=float, nargs="+", default=[1.0, 2.0],
                   help="own-length bucket sizes to run (graftkit's default: 2)")
    a.set_defaults(run=audio)
    i = sub.add_parser("images", help="EfficientNet-Lite0 on CIFAR-10: in-process vs worker decoding vs plain loop")
    i.add_argument("--images", type=int, default=600)
    i.add_argument("--chunks", type=int, default=4)
    i.add_argument("--batch-size", type=int, default=32)
    i.add_argument("--threads", type=int, default=2)
    i.add_argument("--only", type=int, nargs="+", choices=[1, 2, 3, 4],
                   help="run only these arms: 1 graftkit in-process, 2 graftkit + decode worker, 3 plain NCHW loop, "
                        "4 plain channels_last loop (default: all)")
    i.set_defaults(run=images)
    t = sub.add_parser("text", help="all-MiniLM-L6-v2: graftkit on torch, onnxruntime and int8 vs "
                                    "sentence-transformers")
    t.add_argument("--sentences", type=int, default=2000)
    t.add_argument("--chunks", type=int, default=4)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.set_defaults(run=text)
    q = sub.add_parser("int8-recipes", help="how the onnx-int8 graph was chosen: three quantisation recipes")
    q.add_argument("--sentences", type=int, default=2000)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--threads", type=int, default=1)
    q.set_defaults(run=int8_recipes)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
