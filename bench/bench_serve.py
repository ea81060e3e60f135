"""``graftkit serve`` under load (issue 15): all-MiniLM-L6-v2 linear-probe and LoRA models fitted on a seeded
Banking77 subset, each served by a real ``graftkit serve`` process on 127.0.0.1, driven by this process as a
fixed number of one-row requests from 1 / 8 / 32 concurrent clients (then it stops): rows per second, p50 / p99
latency, 5xx count. Micro-batching on against ``--no-batching`` at 32 clients. Memory: the RSS of one server
holding two LoRA adapters on one base against two servers holding one each.

    python bench/bench_serve.py --per-class 5 --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Clock, load, machine, save, shared

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``graftkit serve MODELS... FLAGS`` in a subprocess, up once /health answers."""

    def __init__(self, models: list[str], flags: list[str], threads: int):
        import httpx

        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen([sys.executable, "-m", "graftkit.cli.main", "-q", "serve", *models,
                                         "--port", str(self.port), *flags], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                sys.exit(f"graftkit serve {models} exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("graftkit serve did not come up in 300 s")
            time.sleep(0.3)

    def rss_mb(self) -> float:
        return _rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


async def _drive(url: str, model: str, texts: list[str], clients: int, requests: int) -> dict:
    """``requests`` one-row requests shared among ``clients`` concurrent clients; latency per request."""
    import httpx

    latencies, statuses = [], []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(texts[i % len(texts)])

    async def client(http):
        while not queue.empty():
            text = queue.get_nowait()
            started = time.perf_counter()
            answer = await http.post(f"{url}/v1/models/{model}/predict", json={"inputs": [{"text": text}]})
            latencies.append(time.perf_counter() - started)
            statuses.append(answer.status_code)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": requests, "rows_per_s": round(requests / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "status_5xx": sum(s >= 500 for s in statuses), "status_other": sum(s != 200 and s < 500 for s in statuses)}


def _fit(args, work: Path) -> dict[str, Path]:
    import graftkit as gk

    frame = pd.read_csv(shared("data", "banking77", "train.csv"))
    subset = frame.groupby("category").sample(n=args.per_class, random_state=args.seed)
    table = gk.load_data(subset.reset_index(drop=True), text="text", label="category")
    common = {"progress": False, "use_cache": False, "seed": args.seed}
    dirs = {}
    if "probe" in args.models:
        with Clock() as clock:
            dirs["probe"] = gk.Graft("all-MiniLM-L6-v2", **common).fit(table).save(work / "probe")
        print(f"linear-probe fitted on {len(table)} rows in {clock.wall:.0f} s", flush=True)
    for name, seed in (("lora-a", 0), ("lora-b", 1)) if "lora" in args.models else ():
        with Clock() as clock:
            model = gk.Graft("all-MiniLM-L6-v2", strategy="lora", epochs=args.epochs, batch_size=16, val_size=0.0,
                             patience=0, calibrate=False, learning_rate=2e-3, **{**common, "seed": seed})
            dirs[name] = model.fit(table).save(work / name)
        print(f"{name} fitted in {clock.wall:.0f} s", flush=True)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=5, help="Banking77 training rows per class (default: 5)")
    parser.add_argument("--epochs", type=int, default=1, help="LoRA epochs (default: 1)")
    parser.add_argument("--requests", type=int, default=256, help="one-row requests per run (default: 256)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each server (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", choices=["probe", "lora"], default=["probe", "lora"])
    args = parser.parse_args()
    print(machine(), flush=True)
    print(load(), "at the start", flush=True)
    texts = pd.read_csv(shared("data", "banking77", "test.csv"))["text"].sample(512, random_state=0).tolist()
    rows, memory = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = _fit(args, Path(tmp))
        runs = []
        if "probe" in dirs:
            runs += [("linear-probe", [f"probe={dirs['probe']}"], "probe", []),
                     ("linear-probe", [f"probe={dirs['probe']}"], "probe", ["--no-batching"])]
        if "lora-a" in dirs:
            runs += [("lora (2 adapters, one base)", [f"lora-a={dirs['lora-a']}", f"lora-b={dirs['lora-b']}"],
                      "lora-a", []),
                     ("lora", [f"lora-a={dirs['lora-a']}"], "lora-a", ["--no-batching"]),
                     ("lora", [f"lora-b={dirs['lora-b']}"], "lora-b", [])]
        for label, models, target, flags in runs:
            server = Server(models, flags, args.threads)
            try:
                asyncio.run(_drive(server.url, target, texts, 4, 16))  # warm-up
                key = "+".join(m.split("=")[0] for m in models)
                memory.setdefault(key, round(server.rss_mb(), 1))
                client_counts = [32] if "--no-batching" in flags else args.clients
                if key == "lora-b":
                    client_counts = []  # memory only
                for clients in client_counts:
                    result = asyncio.run(_drive(server.url, target, texts, clients, args.requests))
                    result.update(model=label, batching="off" if flags else "on")
                    rows.append(result)
                    print(result, flush=True)
            finally:
                server.stop()
    print("\n| model | batching | clients | requests | rows/s | p50 ms | p99 ms | 5xx |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batching']} | {r['clients']} | {r['requests']} | {r['rows_per_s']} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['status_5xx']} |")
    for model in [m for m in ("linear-probe", "lora") if any(r["model"].startswith(m) for r in rows)]:
        on = next(r for r in rows if r["model"].startswith(model) and r["batching"] == "on" and r["clients"] == 32)
        off = next(r for r in rows if r["model"].startswith(model) and r["batching"] == "off")
        print(f"{model}: micro-batching at 32 clients: {on['rows_per_s'] / off['rows_per_s']:.1f}x the rows/s")
    print(f"\nserver RSS after warm-up (MB): {memory}")
    if "lora-a+lora-b" in memory:
        print(f"two adapters on one base: {memory['lora-a+lora-b']} MB; two servers with one each: "
              f"{memory['lora-a'] + memory['lora-b']:.1f} MB")
    save("serve-" + "-".join(args.models), {"machine": machine(), "args": vars(args), "runs": rows, "rss_mb": memory})


if __name__ == "__main__":
    main()
