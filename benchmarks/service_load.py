"""Load test of `cactus serve` on loopback: throughput, latency, errors and memory, micro-batching on and off.

For each mode (micro-batching on with its default wait, and off), one `cactus serve --model default` process on a
loopback port; for each level of concurrent clients (--clients), every client sends --requests-per-client requests
back to back, each one subset of --entities texts (windows over the first benchmark test subsets' texts, so that the
requests differ). Reported per (mode, clients): requests/s and entities/s over the level's wall time, p50 / p95 / p99
latency, non-2xx answers, and the server's resident memory (VmRSS) before and after the level. The modes run one
after the other on the same requests; the server has the machine's threads (the clients only wait on sockets).

    python benchmarks/service_load.py     # writes docs/benchmarks/service_load.{json,md}
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provenance import machine_info, write_record

from cactus.data import read_subsets


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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cactus.cli", "serve", "--model", "context-free",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subsets", default="data/benchmark/clinc_intent/test.jsonl")
    ap.add_argument("--entities", type=int, default=30)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests-per-client", type=int, nargs="+", default=[24, 8, 4],
                    help="one per --clients level")
    ap.add_argument("--out", default="docs/benchmarks/service_load")
    args = ap.parse_args()

    texts = [t for s in read_subsets(args.subsets) for t in s.texts]
    bodies = [json.dumps({"subsets": [{"id": f"q{i}", "texts": texts[i * 7: i * 7 + args.entities]}]}).encode()
              for i in range(64)]
    modes = {"batching": [], "no batching": ["--no-batching"]}
    results: dict = {}
    for mode, extra in modes.items():
        proc, url = start_server(extra)
        try:
            post(url + "/v1/cluster", bodies[0])  # warm-up
            results[mode] = [level(url, proc.pid, bodies, c, r, args.entities)
                             for c, r in zip(args.clients, args.requests_per_client)]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        for row in results[mode]:
            print(mode, json.dumps(row))
    speedup = {c: b["requests_per_s"] / n["requests_per_s"]
               for c, b, n in zip(args.clients, results["batching"], results["no batching"])}
    record = {"command": "python benchmarks/service_load.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "results": results, "batching_speedup": speedup, "machine": machine_info()}
    lines = ["# Service load test (loopback)", "", f"`{record['command']}`: one subset of {args.entities} entities per "
             "request, `cactus serve --model default`.", "",
             "| mode | clients | requests | requests/s | entities/s | p50 s | p95 s | p99 s | non-2xx | RSS MiB before "
             "-> after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, rows in results.items():
        for r in rows:
            lines.append(f"| {mode} | {r['clients']} | {r['requests']} | {r['requests_per_s']:.2f} | "
                         f"{r['entities_per_s']:.0f} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['p99_s']:.3f} | "
                         f"{r['non_2xx']} | {r['rss_mib_before']:.0f} -> {r['rss_mib_after']:.0f} |")
    lines += ["", "Micro-batching / no batching, requests/s: "
              + ", ".join(f"{c} clients {v:.2f}x" for c, v in speedup.items()) + ".", ""]
    write_record(args.out, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
