"""The HTTP service on a real uvicorn server on a loopback port, started and stopped by the test."""

import json
import re
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cactus import Cactus
from cactus.data import Subset

LIMITS = ["--max-subsets", "3", "--max-entities", "5", "--max-text-chars", "50", "--max-body-bytes", "4000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(backbone, *extra):
    """A `cactus serve` process on a free loopback port, ready; (process, url)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cactus.cli", "serve", "--model", backbone, "--threshold", "0.5",
                             "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if call(url, "/readyz")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {proc.stdout.read().decode()}")
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the server did not get ready in 120 s")
    return proc, url


@pytest.fixture(scope="module")
def server(tiny_backbone):
    proc, url = start(tiny_backbone, *LIMITS)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def call(url: str, path: str, body=None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


SUBSETS = [
    {"id": "a", "texts": ["wireless mouse", "usb mouse", "banana bread", "sourdough bread"]},
    {"id": 7, "texts": ["apple"]},
    {"id": "c", "texts": ["red car", "blue car", "fast car"]},
]


def test_health_model_and_schema(server, tiny_backbone):
    assert call(server, "/healthz") == (200, {"status": "ok"})
    assert call(server, "/readyz") == (200, {"status": "ready"})
    status, info = call(server, "/v1/model")
    assert status == 200 and info["backbone"] == tiny_backbone and info["attention"] == "nia"
    status, schema = call(server, "/openapi.json")
    body = schema["paths"]["/v1/cluster"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert status == 200 and "subsets" in body["properties"]


def test_answers_equal_predict_in_request_order(server, tiny_backbone):
    status, answer = call(server, "/v1/cluster", {"subsets": SUBSETS, "similarities": True})
    assert status == 200
    expected = Cactus(tiny_backbone, device="cpu").predict([Subset(s["id"], s["texts"]) for s in SUBSETS],
                                                            threshold=0.5)
    assert [s["id"] for s in answer["subsets"]] == ["a", 7, "c"]
    for got, want, sent in zip(answer["subsets"], expected, SUBSETS):
        assert got["cluster_ids"] == want.tolist()
        n = len(sent["texts"])
        assert len(got["similarities"]) == n and all(len(row) == n for row in got["similarities"])
    one = {"subsets": [dict(SUBSETS[0], threshold=-1.0)]}  # everything merges at -1
    assert call(server, "/v1/cluster", one)[1]["subsets"][0] == {"id": "a", "cluster_ids": [0, 0, 0, 0],
                                                                "similarities": None}


def check_concurrent_answers(url: str, backbone: str, requests: int, clients: int) -> None:
    """`requests` requests from `clients` clients at once, each one subset: every answer is its own subset's, equal to
    predict on it alone."""
    texts = [t for s in SUBSETS for t in s["texts"]]
    bodies = [{"subsets": [{"id": f"r{i}", "texts": texts[i % 5: i % 5 + 2 + i % 4]}]} for i in range(requests)]
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda body: call(url, "/v1/cluster", body), bodies))
    model = Cactus(backbone, device="cpu")
    for body, (status, answer) in zip(bodies, answers):
        sent = body["subsets"][0]
        assert status == 200 and answer["subsets"][0]["id"] == sent["id"]
        want = model.predict([Subset(sent["id"], sent["texts"])], threshold=0.5)[0]
        assert answer["subsets"][0]["cluster_ids"] == want.tolist()


def test_concurrent_requests_are_batched_and_answered_alone(server, tiny_backbone):
    check_concurrent_answers(server, tiny_backbone, requests=32, clients=32)


@pytest.mark.parametrize("body, status, message", [
    ({"subsets": SUBSETS + [{"id": "d", "texts": ["x"]}]}, 413, "4 subsets, over the limit of 3"),
    ({"subsets": [{"id": "a", "texts": ["x"] * 6}]}, 413, "subsets[0], subset 'a': 6 entities, over the limit of 5"),
    ({"subsets": [{"id": "a", "texts": ["x", "y" * 51]}]}, 413, "subsets[0], subset 'a', entity 1: 51 characters"),
    ({"subsets": [{"id": "a", "texts": ["x" * 40] * 5}] * 3, "pad": "x" * 4000}, 413, "over the limit of 4000"),
    ({"subsets": [{"id": "a", "texts": ["x", ""]}]}, 422, "subsets[0], subset 'a', entity 1: text is empty"),
    ({"subsets": [{"id": "b", "texts": ["x", 3]}]}, 422, "subset 'b', entity 1: text must be a string"),
    ({"subsets": [{"id": "b", "texts": ["x"], "threshold": 2}]}, 422, "subset 'b': threshold must be a number"),
    ({"subsets": [{"texts": ["x"]}]}, 422, "subsets[0]: needs 'id' and 'texts'"),
    ({"subset": []}, 422, "must be an object with a 'subsets' list"),
    (b"{not json", 422, "the body is not JSON"),
])
def test_limits_and_malformed_bodies_are_named(server, body, status, message):
    got, answer = call(server, "/v1/cluster", body)
    assert got == status and message in answer["error"], answer
    assert call(server, "/healthz")[0] == 200  # and the server goes on


def test_metrics_count_requests_and_batches(server):
    call(server, "/v1/cluster", {"subsets": SUBSETS[:1]})
    with urllib.request.urlopen(server + "/metrics", timeout=30) as response:
        text = response.read().decode()
    assert 'cactus_requests_total{path="/v1/cluster",status="200"}' in text
    assert "cactus_batch_entities_count" in text and "cactus_request_seconds_bucket" in text


def test_shutdown_finishes_the_requests_in_flight(tiny_backbone):
    proc, url = start(tiny_backbone)
    # 100,000 entities (a 4 MB body, inside the default limits): seconds of work even on an idle machine
    texts = [f"item {i} of the catalogue, model {i % 97}" for i in range(100)]
    body = {"subsets": [{"id": i, "texts": texts} for i in range(1000)]}
    answer = {}
    sender = threading.Thread(target=lambda: answer.update(zip(("status", "body"), call(url, "/v1/cluster", body))))
    sender.start()
    time.sleep(0.5)
    assert sender.is_alive(), "the request finished before the shutdown: make it larger"
    proc.send_signal(signal.SIGTERM)
    sender.join(timeout=120)
    assert answer["status"] == 200 and len(answer["body"]["subsets"]) == 1000
    # uvicorn shuts down, then re-raises the signal it caught, as a process ended by SIGTERM should
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert "Finished server process" in proc.stdout.read().decode()


def test_workers_each_load_the_model_and_answer_as_predict(tiny_backbone):
    proc, url = start(tiny_backbone, "--workers", "2")
    try:
        check_concurrent_answers(url, tiny_backbone, requests=16, clients=8)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    log = proc.stdout.read().decode()
    started = re.findall(r"Started server process \[(\d+)\]", log)
    assert len(set(started)) == 2 and log.count("Finished server process") == 2, log
