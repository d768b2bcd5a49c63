"""Load test of `cactus serve` on loopback: throughput, latency, errors and memory, micro-batching on and off, one
worker process and two.

For each mode (micro-batching on with its default wait; off; on, with `--workers 2`), one `cactus serve --model
default` on a loopback port; for each level of concurrent clients (--clients), every client sends
--requests-per-client requests back to back, each one subset of --entities texts (windows over the first benchmark
test subsets' texts, so that the requests differ). Reported per (mode, clients): requests/s and entities/s over the
level's wall time, p50 / p95 / p99 latency, non-2xx answers, and the server's resident memory (VmRSS, its workers'
included) before and after the level. The modes run one after the other on the same requests; the server has the
machine's cores (the clients only wait on sockets).

The ceiling for micro-batching: in this process, after the servers stop, the model's own `similarities` on the same
requests' subsets, one subset per call against --clients' middle level of subsets per call (median of 5 rounds);
what batching can gain is what the encoder gains from larger calls.

Then a soak (--soak-minutes, micro-batching on, --soak-clients clients sending back to back on a fresh server): the
server's VmRSS and the requests answered, sampled every --sample-seconds, to show whether memory levels off.

    python benchmarks/service_load.py     # writes docs/benchmarks/service_load.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provenance import command_line, machine_info, write_record

from cactus.data import Subset, read_subsets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - start


def rss_kib(pid: int) -> int:
    """VmRSS of the process and its children (a server with --workers: the supervisor and its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) + sum(rss_kib(int(c)) for c in children)
    raise KeyError("VmRSS")


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cactus.cli", "serve", "--model", model,
                             "--port", str(port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not get ready")


def level(url: str, pid: int, bodies: list[bytes], clients: int, per_client: int, entities: int) -> dict:
    jobs = [bodies[(c * per_client + r) % len(bodies)] for c in range(clients) for r in range(per_client)]
    before = rss_kib(pid)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda body: post(url + "/v1/cluster", body), jobs))
    wall = time.perf_counter() - start
    latencies = sorted(t for _, t in results)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"clients": clients, "requests": len(jobs), "seconds": wall, "requests_per_s": len(jobs) / wall,
            "entities_per_s": len(jobs) * entities / wall, "p50_s": statistics.median(latencies), "p95_s": pct(0.95),
            "p99_s": pct(0.99), "non_2xx": sum(not 200 <= s < 300 for s, _ in results),
            "rss_mib_before": before / 1024, "rss_mib_after": rss_kib(pid) / 1024}


def encoder_gain(model_name: str, subsets: list, per_call: int, rounds: int = 5) -> dict:
    """Seconds to embed `subsets` one per call and `per_call` per call, in this process (median of `rounds`)."""
    import torch

    from cactus import Cactus

    torch.set_num_threads(os.cpu_count() or 1)
    model = Cactus.from_pretrained(model_name, device="cpu")
    model.similarities(subsets[:per_call])  # warm-up

    def seconds(k: int) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(0, len(subsets), k):
                model.similarities(subsets[i: i + k])
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    one, many = seconds(1), seconds(per_call)
    return {"subsets": len(subsets), "per_call": per_call, "seconds_one_per_call": one, "seconds_batched": many,
            "speedup": one / many}


def soak(url: str, pid: int, bodies: list[bytes], clients: int, seconds: float, every: float) -> dict:
    """`clients` clients posting back to back for `seconds`; (time, VmRSS, answered) sampled every `every` s."""
    deadline = time.perf_counter() + seconds
    answered, failed, lock = [0], [0], threading.Lock()

    def client(c: int) -> None:
        i = c
        while time.perf_counter() < deadline:
            status, _ = post(url + "/v1/cluster", bodies[i % len(bodies)])
            with lock:
                answered[0] += 1
                failed[0] += not 200 <= status < 300
            i += clients

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    samples = []

    def sample() -> None:
        samples.append({"s": time.perf_counter() - start, "rss_mib": rss_kib(pid) / 1024, "answered": answered[0]})

    for t in threads:
        t.start()
    while time.perf_counter() < deadline:
        sample()
        time.sleep(every)
    for t in threads:
        t.join()
    sample()
    return {"clients": clients, "seconds": samples[-1]["s"], "requests": answered[0], "non_2xx": failed[0],
            "samples": samples}


def plot_soak(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = record["soak"]["samples"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s["answered"] for s in samples], [s["rss_mib"] for s in samples])
    ax.set_xlabel("requests answered")
    ax.set_ylabel("server VmRSS (MiB)")
    ax.set_ylim(0, max(s["rss_mib"] for s in samples) * 1.1)
    ax.set_title(f"cactus serve, {record['soak']['clients']} clients back to back, micro-batching on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--subsets", default="data/benchmark/clinc_intent/test.jsonl")
    ap.add_argument("--entities", type=int, default=30)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests-per-client", type=int, nargs="+", default=[24, 8, 4],
                    help="one per --clients level")
    ap.add_argument("--soak-minutes", type=float, default=15)
    ap.add_argument("--soak-clients", type=int, default=32)
    ap.add_argument("--sample-seconds", type=float, default=5)
    ap.add_argument("--out", default="docs/benchmarks/service_load")
    args = ap.parse_args()

    texts = [t for s in read_subsets(args.subsets) for t in s.texts]
    windows = [texts[i * 7: i * 7 + args.entities] for i in range(64)]
    bodies = [json.dumps({"subsets": [{"id": f"q{i}", "texts": w}]}).encode() for i, w in enumerate(windows)]
    modes = {"batching": [], "no batching": ["--no-batching"], "2 workers, batching": ["--workers", "2"]}
    results: dict = {}
    for mode, extra in modes.items():
        proc, url = start_server(args.model, extra)
        try:
            post(url + "/v1/cluster", bodies[0])  # warm-up
            results[mode] = [level(url, proc.pid, bodies, c, r, args.entities)
                             for c, r in zip(args.clients, args.requests_per_client)]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        for row in results[mode]:
            print(mode, json.dumps(row))
    proc, url = start_server(args.model, [])
    try:
        post(url + "/v1/cluster", bodies[0])
        soaked = soak(url, proc.pid, bodies, args.soak_clients, args.soak_minutes * 60, args.sample_seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    ceiling = encoder_gain(args.model, [Subset(id=f"q{i}", texts=w) for i, w in enumerate(windows[:32])],
                           args.clients[len(args.clients) // 2])
    speedup = {c: b["requests_per_s"] / n["requests_per_s"]
               for c, b, n in zip(args.clients, results["batching"], results["no batching"])}
    workers = {c: w["requests_per_s"] / b["requests_per_s"]
               for c, b, w in zip(args.clients, results["batching"], results["2 workers, batching"])}
    record = {"command": command_line(), "args": vars(args),
              "results": results, "batching_speedup": speedup, "workers_speedup": workers, "encoder_gain": ceiling,
              "soak": soaked, "machine": machine_info()}
    lines = ["# Service load test (loopback)", "", f"`{record['command']}`: one subset of {args.entities} entities per "
             f"request, `cactus serve --model {args.model}`.", "",
             "| mode | clients | requests | requests/s | entities/s | p50 s | p95 s | p99 s | non-2xx | RSS MiB before "
             "-> after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, rows in results.items():
        for r in rows:
            lines.append(f"| {mode} | {r['clients']} | {r['requests']} | {r['requests_per_s']:.2f} | "
                         f"{r['entities_per_s']:.0f} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['p99_s']:.3f} | "
                         f"{r['non_2xx']} | {r['rss_mib_before']:.0f} -> {r['rss_mib_after']:.0f} |")
    lines += ["", "Micro-batching / no batching, requests/s: "
              + ", ".join(f"{c} clients {v:.2f}x" for c, v in speedup.items()) + ".", "",
              "2 workers (one core each) / 1 worker (both cores), requests/s, micro-batching on: "
              + ", ".join(f"{c} clients {v:.2f}x" for c, v in workers.items()) + ".", "",
              f"The ceiling, the encoder alone in one process: {ceiling['subsets']} of these subsets embedded one per "
              f"call in {ceiling['seconds_one_per_call']:.3f} s, {ceiling['per_call']} per call in "
              f"{ceiling['seconds_batched']:.3f} s: {ceiling['speedup']:.2f}x (median of 5 rounds).", ""]
    samples = soaked["samples"]
    marks = [samples[round(f * (len(samples) - 1))] for f in (0, 0.25, 0.5, 0.75, 1)]
    lines += ["## Soak: memory over a long run", "",
              f"A fresh server, micro-batching on, {soaked['clients']} clients back to back for "
              f"{soaked['seconds'] / 60:.1f} minutes: {soaked['requests']} requests, {soaked['non_2xx']} non-2xx; "
              f"VmRSS sampled every {args.sample_seconds:g} s (plot: service_load.png).", "",
              "| minute | requests answered | VmRSS MiB |", "|---|---|---|"]
    lines += [f"| {m['s'] / 60:.1f} | {m['answered']} | {m['rss_mib']:.0f} |" for m in marks]
    half = [s["rss_mib"] for s in samples[len(samples) // 2:]]
    lines += ["", f"Second half of the run: VmRSS from {half[0]:.0f} to {half[-1]:.0f} MiB (min {min(half):.0f}, "
              f"max {max(half):.0f}); peak over the whole run {max(s['rss_mib'] for s in samples):.0f} MiB.", ""]
    write_record(args.out, record, "\n".join(lines), plot=plot_soak)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
