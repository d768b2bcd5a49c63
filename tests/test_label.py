"""`cactus label` against a real OpenAI-compatible HTTP server on a loopback port, started by the tests in a thread:
it records every request and answers each with the reply scripted for its subset, or else with the right grouping
(the entities grouped by their last word, named by it). The command runs as a user runs it: `cactus.cli.main` in
this process, and the installed script in a subprocess where it is killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cactus.cli import main
from cactus.data import Subset, read_subsets, write_subsets
from cactus.label import DEFAULT_TEMPLATE, Prompt
from cactus.label.cache import question_key
from cactus.label.parse import Cluster, ReplyError, check_grouping, labels_of, parse_reply
from conftest import REPO
from test_cli import CACTUS

USAGE = {"prompt_tokens": 100, "completion_tokens": 20}  # every reply's; the accounts are checked against it
FAST = ["--timeout", "1", "--backoff", "0.05", "--retries", "2", "-q"]  # short waits, so that the tests are quick


class ScriptedLLM:
    """A chat-completions server on 127.0.0.1. `script` maps a subset's tag (the first word of its first text) to
    the replies its requests get, one each, in order; a reply is text (the message content), `("status", code,
    headers)`, or `"hang"` (no answer until the server stops). Past its script, or without one, a subset gets the
    right grouping. `json_mode=False` refuses requests that ask for JSON output (400), as some servers do."""

    def __init__(self, script: dict | None = None, delay: float = 0.0, json_mode: bool = True):
        self.script = {tag: list(replies) for tag, replies in (script or {}).items()}
        self.delay, self.json_mode = delay, json_mode
        self.requests: list[dict] = []  # per request: tag, body, authorization header, arrival time
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedLLM":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def tags(self) -> list[str]:
        """The tag of every request received, in order."""
        return [r["tag"] for r in self.requests]

    def answer(self, body: dict, authorization: str | None) -> tuple[int, dict, dict | None]:
        """(status, headers, JSON body or None: no answer) for one request."""
        texts = re.findall(r"^\d+\. (.*)$", body["messages"][0]["content"], flags=re.MULTILINE)
        tag = texts[0].split()[0]
        with self.lock:
            self.requests.append({"tag": tag, "body": body, "time": time.monotonic(),
                                  "authorization": authorization})
            if not self.json_mode and "response_format" in body:
                return 400, {}, {"error": {"message": "response_format is not supported"}}
            reply = self.script[tag].pop(0) if self.script.get(tag) else right_reply(texts)
        if reply == "hang":
            self.stopping.wait(30)
            return 200, {}, None
        if isinstance(reply, tuple):
            return reply[1], reply[2], {"error": {"message": "scripted"}}
        time.sleep(self.delay)
        return 200, {}, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                      "finish_reason": "stop"}], "usage": USAGE}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                assert self.path == "/v1/chat/completions"
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, payload = fake.answer(body, self.headers.get("Authorization"))
                if payload is None:
                    return
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in {**headers, "Content-Type": "application/json",
                                        "Content-Length": str(len(data))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        return Handler


def right_reply(texts: list[str]) -> str:
    """The grouping of `texts` by their last word, as the prompt asks for it."""
    members: dict[str, list[int]] = {}
    for i, text in enumerate(texts, start=1):
        members.setdefault(text.split()[-1], []).append(i)
    return json.dumps({"clusters": [{"name": name, "members": m} for name, m in members.items()]})


def subsets(*tags: str) -> list[Subset]:
    """One subset per tag, its texts unique to it: "<tag> red apple", "<tag> green apple", "<tag> fast car"."""
    return [Subset(tag, [f"{tag} red apple", f"{tag} green apple", f"{tag} fast car"], extra={"note": k})
            for k, tag in enumerate(tags)]


RIGHT = (["0", "0", "1"], ["apple", "car"])  # the labels and label_names of a subset answered right


def label(capsys, server: ScriptedLLM, input: Path, out: Path, *extra) -> tuple[int, str]:
    code = main(["label", str(input), "-o", str(out), "--endpoint", server.url, "--llm", "fake-7b", *FAST,
                 *map(str, extra)])
    return code, capsys.readouterr().err


def results(path: Path) -> list[tuple]:
    """Per subset of an output: (id, labels, label_names, label_error, note)."""
    return [(s.id, s.labels, s.extra.get("label_names"), s.extra.get("label_error"), s.extra["note"])
            for s in read_subsets(path)]


def test_each_scripted_reply_ends_as_specified(capsys, tmp_path):
    tags = ["json", "prose", "lines", "missing", "twice", "invented", "empty", "limited", "crash", "hang", "down"]
    write_subsets(tmp_path / "in.jsonl", subsets(*tags))
    script = {
        "prose": ["Sure! Here is the grouping you asked for: [[1, 2], [3]]. Let me know if it helps."],
        "lines": ["Clusters:\n- Apples: 1, 2\n- Cars: 3"],
        "missing": ['{"clusters": [{"name": "apple", "members": [1, 2]}]}'],  # then right
        "twice": ['{"clusters": [{"name": "apple", "members": [1, 2]}, {"name": "car", "members": [2, 3]}]}'],
        "invented": ['{"clusters": [{"name": "apple", "members": [1, 2]}, {"name": "car", "members": [3, 9]}]}'] * 3,
        "empty": [""] * 3,
        "limited": [("status", 429, {"Retry-After": "1"})],
        "crash": [("status", 500, {})],
        "hang": ["hang"],
        "down": [("status", 503, {})] * 3,
    }
    with ScriptedLLM(script) as server:
        code, err = label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--concurrency", "3",
                          "--summary", tmp_path / "summary.json", "--price-prompt", "0.5", "--price-completion", "2")
    assert code == 0 and err == ""
    invalid = "no valid grouping in 3 replies; the last: "
    assert results(tmp_path / "out.jsonl") == [
        ("json", *RIGHT, None, 0),
        ("prose", ["0", "0", "1"], [None, None], None, 1),  # a list of lists names no cluster
        ("lines", ["0", "0", "1"], ["Apples", "Cars"], None, 2),
        ("missing", *RIGHT, None, 3),  # repaired by the re-ask
        ("twice", *RIGHT, None, 4),
        ("invented", None, None, invalid + "9 is not an entity number (the entities are numbered 1 to 3)", 5),
        ("empty", None, None, invalid + "the reply was empty", 6),
        ("limited", *RIGHT, None, 7),  # retried
        ("crash", *RIGHT, None, 8),
        ("hang", *RIGHT, None, 9),
        ("down", None, None, f"request failed: {server.url}/chat/completions answered 503 Service Unavailable: "
                             '{"error": {"message": "scripted"}} (3 tries)', 10),
    ]
    asked = {tag: server.tags().count(tag) for tag in tags}
    assert asked == {"json": 1, "prose": 1, "lines": 1, "missing": 2, "twice": 2, "invented": 3, "empty": 3,
                     "limited": 2, "crash": 2, "hang": 2, "down": 3}
    reask = [r["body"]["messages"] for r in server.requests if r["tag"] == "missing"][1]
    assert [m["role"] for m in reask] == ["user", "assistant", "user"]
    assert reask[2]["content"].startswith("That grouping is not valid: entity 3 is in no cluster.")
    reask = [r["body"]["messages"] for r in server.requests if r["tag"] == "twice"][1]
    assert "entity 2 is in more than one cluster" in reask[2]["content"]
    limited = [r["time"] for r in server.requests if r["tag"] == "limited"]
    assert limited[1] - limited[0] >= 1.0  # the Retry-After, not the 0.05 s backoff
    assert all(r["body"]["response_format"] == {"type": "json_object"} and r["body"]["model"] == "fake-7b"
               and r["body"]["temperature"] == 0.0 for r in server.requests)

    summary = json.loads((tmp_path / "summary.json").read_text())
    replies = len(server.requests) - 6  # less the 429, the 500, the hang and the three 503s
    assert {k: summary[k] for k in ("subsets", "labelled", "failed", "requests", "retries", "reasks")} == {
        "subsets": 11, "labelled": 8, "failed": 3, "requests": len(server.requests), "retries": 5, "reasks": 6}
    assert summary["questions"] == {"from_cache": 0, "asked": 11}
    assert summary["this_run"] == {"prompt_tokens": 100 * replies, "completion_tokens": 20 * replies,
                                   "cost": pytest.approx(replies * (0.05 + 0.04))}
    assert summary["all_answers"] == summary["this_run"]  # the 503s were answered with no reply
    assert summary["failures"][0] == {"id": "invented", "error": results(tmp_path / "out.jsonl")[5][3]}
    assert summary["prompt_version"] == Prompt().version and summary["llm"] == "fake-7b"


def test_a_rerun_asks_nothing_answered_and_retry_failed_asks_the_invalid_again(capsys, tmp_path):
    write_subsets(tmp_path / "in.jsonl", subsets("a", "b", "bad", "down"))
    script = {"bad": ["nothing useful"] * 2, "down": [("status", 500, {})] * 2}
    with ScriptedLLM(script) as server:
        label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--max-reasks", "1", "--retries", "1")
        first = (tmp_path / "out.jsonl").read_bytes()
        assert server.tags().count("bad") == 2 and server.tags().count("down") == 2
        entries = sorted(p.name for p in (tmp_path / "llm-cache").rglob("*.json"))
        assert len(entries) == 3  # answers, valid or not; not the failed request

        del server.requests[:]
        code, _ = label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--max-reasks", "1",
                        "--summary", tmp_path / "s.json")
        assert code == 0 and server.tags() == ["down"]  # only the failed request is asked again
        assert json.loads((tmp_path / "s.json").read_text())["questions"] == {"from_cache": 3, "asked": 1}
        assert results(tmp_path / "out.jsonl")[3] == ("down", *RIGHT, None, 3)
        assert results(tmp_path / "out.jsonl")[:3] == results_of(first, tmp_path)[:3]

        del server.requests[:]
        label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--retry-failed")
        assert server.tags() == ["bad"]  # the right grouping this time
        assert [r[1] for r in results(tmp_path / "out.jsonl")] == [RIGHT[0]] * 4

        del server.requests[:]
        label(capsys, server, tmp_path / "in.jsonl", tmp_path / "again.jsonl", "--retry-failed")
        assert server.tags() == []  # zero requests: everything is in the cache
        assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()


def results_of(data: bytes, tmp_path: Path) -> list[tuple]:
    (tmp_path / "copy.jsonl").write_bytes(data)
    return results(tmp_path / "copy.jsonl")


def test_a_server_without_json_mode_is_asked_for_text(capsys, caplog, tmp_path):
    write_subsets(tmp_path / "in.jsonl", subsets("a", "b", "c"))
    with ScriptedLLM(json_mode=False) as server:
        code, _ = label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--concurrency", "1")
    assert code == 0 and "refuses JSON mode" in caplog.text and "asking for plain text from now on" in caplog.text
    assert [r[1:3] for r in results(tmp_path / "out.jsonl")] == [RIGHT] * 3
    json_mode = ["response_format" in r["body"] for r in server.requests]
    assert json_mode == [True, False, False, False]  # refused once, then never asked for again


def test_a_prompt_file_is_used_and_versions_the_cache(capsys, tmp_path):
    write_subsets(tmp_path / "in.jsonl", subsets("a"))
    (tmp_path / "prompt.txt").write_text("Shop products, $count of them:\n$entities\nGroup them; JSON {\"clusters\"}.")
    with ScriptedLLM() as server:
        label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
        code, _ = label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--prompt",
                        tmp_path / "prompt.txt")
    assert code == 0 and len(server.requests) == 2  # another prompt, another question
    assert server.requests[1]["body"]["messages"][0]["content"] == (
        "Shop products, 3 of them:\n1. a red apple\n2. a green apple\n3. a fast car\nGroup them; JSON {\"clusters\"}.")
    assert Prompt(DEFAULT_TEMPLATE).version != Prompt.from_file(tmp_path / "prompt.txt").version


@pytest.mark.parametrize("reply, clusters", [
    ('{"clusters": [{"name": "x", "members": [1, 2]}, {"name": "y", "members": [3]}]}',
     [("x", (1, 2)), ("y", (3,))]),
    ('{"groups": [{"label": "x", "entities": ["1", "#2"]}, {"title": "y", "ids": ["3. fast car"]}]}',
     [("x", (1, 2)), ("y", (3,))]),
    ('{"clusters": {"x": [1, 2], "y": [3]}}', [("x", (1, 2)), ("y", (3,))]),
    ('{"x": [1, 2], "y": [3]}', [("x", (1, 2)), ("y", (3,))]),
    ('{"answer": [[1, 2], [3], []]}', [(None, (1, 2)), (None, (3,))]),
    ('Here you go:\n```json\n{"clusters": [{"name": "x", "members": [1, 2, 3]}]}\n```\nDone.', [("x", (1, 2, 3))]),
    ('I think {"note": 1} and then [[1], [2, 3]] fits.', [(None, (1,)), (None, (2, 3))]),
    ("1. **Fruit**: 1, 2 and 4\n2. Cars: #3", [("Fruit", (1, 2, 4)), ("Cars", (3,))]),
    ('{"clusters": [{"name": "x", "members": [1, "red apple", true]}]}', [("x", (1, "red apple", True))]),
])
def test_replies_are_read_in_every_form(reply, clusters):
    assert [(c.name, c.members) for c in parse_reply(reply)] == clusters


@pytest.mark.parametrize("reply", ["", "  \n", "I cannot group these.", "[1, 2, 3]", '{"note": "none"}'])
def test_a_reply_without_a_grouping_is_refused(reply):
    with pytest.raises(ReplyError):
        parse_reply(reply)


def test_check_grouping_names_every_problem_and_labels_number_clusters_by_first_entity():
    clusters = [Cluster("b", (2, 2, 7, "x")), Cluster("a", (1,))]
    assert check_grouping(clusters, 4) == [
        "entities 3, 4 are in no cluster", "entity 2 is in more than one cluster (or twice in one)",
        "7, 'x' are not an entity number (the entities are numbered 1 to 4)"]
    assert labels_of([Cluster("b", (2, 3)), Cluster("a", (1,))], 3) == (["0", "1", "1"], ["a", "b"])


@pytest.mark.parametrize("input, args, code, message", [
    ("in", ["--endpoint", "localhost:8080"], 2, "--endpoint localhost:8080: not an http:// or https:// URL"),
    ("in", ["--api-key-env", "CACTUS_NO_SUCH_VARIABLE"], 2, "--api-key-env CACTUS_NO_SUCH_VARIABLE: that"),
    ("in", ["-o", "{tmp}/out.csv"], 2, "-o {tmp}/out.csv: labels are written as JSONL"),
    ("in", ["--prompt", "{tmp}/bad.txt"], 2, "--prompt {tmp}/bad.txt: the template has no $entities"),
    ("in", ["--prompt", "{tmp}/none.txt"], 2, "--prompt {tmp}/none.txt: no such file"),
    ("in", ["--concurrency", "0"], 2, "argument --concurrency: must be a whole number >= 1"),
    ("in", ["--timeout", "0"], 2, "argument --timeout: must be a number > 0"),
    ("in", ["--summary", "{tmp}/in.jsonl"], 2, "--summary {tmp}/in.jsonl is the input"),
    ("in", ["--cache", "{tmp}/in.jsonl"], 2, "--cache {tmp}/in.jsonl: is a file"),
    ("labelled", [], 3, "{tmp}/labelled.jsonl, subset 'a': holds 'labels' already"),
])
def test_options_outputs_and_inputs_are_checked_before_any_request(capsys, tmp_path, input, args, code, message):
    write_subsets(tmp_path / "in.jsonl", subsets("a"))
    write_subsets(tmp_path / "labelled.jsonl", [s.with_labels([1, 1, 2]) for s in subsets("a")])
    (tmp_path / "bad.txt").write_text("Group these: $count")
    with ScriptedLLM() as server:
        argv = ["label", f"{tmp_path}/{input}.jsonl", "-o", f"{tmp_path}/out.jsonl", "--llm", "m", "--endpoint",
                server.url, *(a.replace("{tmp}", str(tmp_path)) for a in args)]  # a repeated option: the last
        with pytest.raises(SystemExit) if code == 2 and args[0] in ("--concurrency", "--timeout") else nullcontext():
            assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in err and err.count("\n") == 1
    assert server.requests == [] and not (tmp_path / "out.jsonl").exists()


def test_a_wrong_key_or_an_unreachable_endpoint_ends_the_run(capsys, tmp_path):
    write_subsets(tmp_path / "in.jsonl", subsets("a", "b", "c"))
    with ScriptedLLM({"b": [("status", 401, {})]}) as server:
        code, err = label(capsys, server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--concurrency", "1")
        url = server.url
    assert code == 2 and "answered 401 Unauthorized" in err and "check --endpoint, --llm and the API key" in err
    assert not (tmp_path / "out.jsonl").exists()
    assert len(list((tmp_path / "llm-cache").rglob("*.json"))) == 1  # the answer before is kept
    code = main(["label", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--endpoint", url,
                 "--llm", "m", *FAST])  # the server is gone
    err = capsys.readouterr().err
    assert code == 2 and f"cannot connect to {url}/chat/completions" in err and "(3 tries)" in err


def test_a_killed_run_resumes_without_asking_twice_and_the_key_is_written_nowhere(tmp_path):
    key = "sk-cactus-test-6f1d2e9a0b7c4d3e"
    env = {**os.environ, "CACTUS_TEST_KEY": key}
    tags = [f"t{k}" for k in range(12)]
    write_subsets(tmp_path / "in.jsonl", subsets(*tags))
    out, cache, summary = tmp_path / "out" / "labels.jsonl", tmp_path / "cache", tmp_path / "summary.json"
    with ScriptedLLM(delay=0.3) as server:
        args = [*CACTUS, "label", tmp_path / "in.jsonl", "-o", out, "--endpoint", server.url, "--llm", "m",
                "--api-key-env", "CACTUS_TEST_KEY", "--cache", cache, "--summary", summary, "--concurrency", "2"]
        proc = subprocess.Popen(list(map(str, args)), env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(list(cache.rglob("*.json"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        killed_err = proc.communicate(timeout=60)[1]
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        answered = {p.stem for p in cache.rglob("*.json")}
        asked_before = len(server.requests)
        assert 3 <= len(answered) < 12

        done = subprocess.run(list(map(str, args)), env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    version = Prompt().version
    key_of = {s.id: question_key("m", version, 0.0, s.texts) for s in subsets(*tags)}
    again = [r["tag"] for r in server.requests[asked_before:]]
    assert not {tag for tag in again if key_of[tag] in answered}  # nothing answered is asked twice
    assert sorted(again) == sorted(tag for tag in tags if key_of[tag] not in answered)
    assert [r[1:3] for r in results(out)] == [RIGHT] * 12
    assert json.loads(summary.read_text())["questions"] == {"from_cache": len(answered), "asked": 12 - len(answered)}

    assert {r["authorization"] for r in server.requests} == {f"Bearer {key}"}  # sent, and written nowhere:
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "in.jsonl"]
    assert len(written) == 12 + 2
    assert all(key.encode() not in p.read_bytes() for p in written)
    assert key not in killed_err + done.stderr + done.stdout


def test_the_labels_train_with_cactus_train(capsys, tmp_path, tiny_backbone):
    tags = ["a", "b", "c", "d"]
    write_subsets(tmp_path / "in.jsonl", subsets(*tags))
    with ScriptedLLM() as server:
        label(capsys, server, tmp_path / "in.jsonl", tmp_path / "labels.jsonl")
    code = main(["train", "--train", str(tmp_path / "labels.jsonl"), "--val", str(tmp_path / "labels.jsonl"),
                 "--out", str(tmp_path / "run"), "--model", tiny_backbone, "--attention", "sia", "--max-steps", "2",
                 "--batch-size", "2", "--log-every", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "loss" for r in log) == 2 and (tmp_path / "run" / "best").is_dir()


def test_agreement_with_hand_labels_is_measured_by_evaluate(capsys, tmp_path):
    write_subsets(tmp_path / "hand.jsonl", [s.with_labels(["fruit", "fruit", "car"]) for s in subsets("a", "b")])
    write_subsets(tmp_path / "texts.jsonl", subsets("a", "b"))
    with ScriptedLLM({"b": ['{"clusters": [{"name": "things", "members": [1, 2, 3]}]}']}) as server:
        label(capsys, server, tmp_path / "texts.jsonl", tmp_path / "llm.jsonl")
    assert main(["evaluate", str(tmp_path / "hand.jsonl"), "--predictions", str(tmp_path / "llm.jsonl"),
                 "--report", str(tmp_path / "agreement.json"), "-q"]) == 0
    per_subset = json.loads((tmp_path / "agreement.json").read_text())["per_subset"]
    assert [(r["id"], r["ami"]) for r in per_subset] == [("a", pytest.approx(1.0)), ("b", pytest.approx(0.0))]


def test_the_docs_show_the_shipped_prompt():
    assert DEFAULT_TEMPLATE in (REPO / "docs" / "label.md").read_text()
