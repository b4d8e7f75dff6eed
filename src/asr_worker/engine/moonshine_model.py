"""Moonshine base (English) for the engine: found in its PyPI package, converted once, cached.

The weights (MIT, Moonshine AI) ship inside the `moonshine-cpp` wheel as ONNX Runtime `.ort`
files, whose int8 weights are turned back into float at every decoder step: as shipped, a
token costs about 56 ms on one thread here, no faster than Whisper base. So once, the first
time a process needs them (or at install: `python -m asr_worker.engine.moonshine_model`), they
are converted:

1. the package's three files are checked against known sha256 sums (a third party's package);
2. each `.ort` is read back into ONNX (`ort_format.py`) and its constant arithmetic folded by
   onnxruntime itself (the int8 weights become float constants);
3. the merged decoder's `If` (first step, or a step with the cache) becomes two models, so that
   its weights are the graph's own constants;
4. each model's matrix products are quantised again, per channel, to int8 (onnxruntime's
   `quantize_dynamic`): about 7 ms a token and 0.03 CPU s per second of audio. Per tensor, one
   scale for a whole matrix lost an utterance at 8 kHz; per channel keeps the words the shipped
   files give.

The result goes to `$XDG_CACHE_HOME/asr-worker/models/` (else `~/.cache/...`), in a directory
named after the sources' hash and this conversion's version: built in a temporary directory
beside it and renamed into place, so concurrent workers never see half of it (the first rename
wins; a loser discards its copy). Its `manifest.json` holds the sha256 of every file, checked
every time a process loads them. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import ModelError
from .model import cache_root, sha256_of

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto

PACKAGE: Final = "moonshine_cpp"
PACKAGE_PIP: Final = "moonshine-cpp==0.1.4"
# The package's files (under models/base-en/) and their sha256.
SOURCES: Final = {
    "encoder_model.ort": "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c",
    "decoder_model_merged.ort": "370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3",
    "tokenizer.bin": "04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9",
}
CONVERSION: Final = "int8pc-1"  # bump when the conversion changes: a new cache directory
ENCODER: Final = "encoder.onnx"
DECODER_FIRST: Final = "decoder_first.onnx"  # the first step: the start token, no cache
DECODER_STEP: Final = "decoder_step.onnx"  # every later step, with the cache
TOKENIZER: Final = "tokenizer.bin"
MANIFEST: Final = "manifest.json"
FILES: Final = (ENCODER, DECODER_FIRST, DECODER_STEP, TOKENIZER)

log = logging.getLogger("asr_worker.local")


def package_dir() -> Path:
    """Where the installed package keeps base-en, found without importing it (its import loads
    a native library of its own)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the Moonshine model is not installed (no {PACKAGE}): pip install {PACKAGE_PIP}, "
            "or set ASR_LOCAL_ENGINE=whisper"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "base-en"


def target_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / f"moonshine-base-en-{CONVERSION}-{SOURCES['encoder_model.ort'][:12]}"


def ensure_model(root: Path | None = None, source: Path | None = None) -> Path:
    """The directory of the converted, verified model, converting it first if needed.

    Blocking (seconds to hash, about half a minute to convert): call it from a thread, never at
    import."""
    target = target_dir(root)
    if verified(target):
        return target
    if target.exists():  # damaged since (disk, a person): rebuilt from the package, once
        shutil.rmtree(target, ignore_errors=True)
    source = source or package_dir()
    for name, expected in SOURCES.items():
        path = source / name
        if not path.is_file():
            raise ModelError(
                f"the Moonshine package is incomplete: {path} is missing; reinstall {PACKAGE_PIP}"
            )
        if (actual := sha256_of(path)) != expected:
            raise ModelError(
                f"refusing the packaged Moonshine model: {name} has sha256 {actual}, expected "
                f"{expected}; reinstall {PACKAGE_PIP} from PyPI"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting the Moonshine model once", extra={"into": str(target)})
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        building = Path(tmp) / "model"
        building.mkdir()
        convert(source, building)
        manifest = {name: sha256_of(building / name) for name in FILES}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for path in building.iterdir():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # another process put its copy there first
            os.rename(building, target)
    if not verified(target):
        raise ModelError(f"the converted Moonshine model in {target} does not match its manifest")
    return target


def verified(target: Path) -> bool:
    """Whether `target` holds every file, each with the sha256 its manifest says."""
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or set(manifest) != set(FILES):
        return False
    return all((target / name).is_file() and sha256_of(target / name) == manifest[name] for name in FILES)


def convert(source: Path, out: Path) -> None:
    """The package's `.ort` files, as int8 per-channel ONNX models in `out` (see the module)."""
    import onnx

    from .ort_format import read_model

    with tempfile.TemporaryDirectory() as scratch:
        encoder = _folded(read_model((source / "encoder_model.ort").read_bytes()), Path(scratch))
        _quantize(encoder, out / ENCODER, Path(scratch))
        merged = _folded(read_model((source / "decoder_model_merged.ort").read_bytes()), Path(scratch))
        first, step = _unmerged(merged)
        _quantize(first, out / DECODER_FIRST, Path(scratch))
        _quantize(step, out / DECODER_STEP, Path(scratch))
    shutil.copyfile(source / TOKENIZER, out / TOKENIZER)
    onnx.checker.check_model(str(out / ENCODER))


def _folded(model: ModelProto, scratch: Path) -> ModelProto:
    """Constant arithmetic folded by onnxruntime's basic graph optimisations, saved and read."""
    import onnx
    import onnxruntime

    raw, folded = scratch / "raw.onnx", scratch / "folded.onnx"
    onnx.save(model, str(raw))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(folded))
    raw.unlink()
    folded.unlink()
    return loaded


def _unmerged(merged: ModelProto) -> tuple[ModelProto, ModelProto]:
    """A merged decoder (one `If` on `use_cache_branch`) as two models: the `else` branch (the
    first step) and the `then` branch (with the cache), each with the outer graph's inputs and
    constants it reads as its own."""
    from onnx import AttributeProto, helper

    graph = merged.graph
    branches = [n for n in graph.node if n.op_type == "If"]
    if len(graph.node) != 1 or len(branches) != 1:
        raise ModelError("the Moonshine decoder is not the merged decoder this conversion expects")
    (switch,) = branches
    constants = {t.name: t for t in graph.initializer}
    inputs = {i.name: i for i in graph.input}

    def outer_names(sub: GraphProto, inner: set[str]) -> list[str]:
        names: list[str] = []
        for node in sub.node:
            names += [x for x in node.input if x and x not in inner]
            for attribute in node.attribute:
                if attribute.type == AttributeProto.GRAPH:
                    names += outer_names(attribute.g, inner | {o for n in attribute.g.node for o in n.output})
        return list(dict.fromkeys(names))

    made: dict[str, ModelProto] = {}
    for attribute in switch.attribute:
        sub = attribute.g
        inner = {o for n in sub.node for o in n.output} | {t.name for t in sub.initializer}
        used = outer_names(sub, inner)
        unknown = [u for u in used if u not in constants and u not in inputs]
        if unknown:
            raise ModelError(f"the Moonshine decoder's {attribute.name} reads unknown values {unknown[:3]}")
        nodes = list(sub.node)
        for inside, outside in zip(sub.output, switch.output, strict=True):
            if inside.name != outside:
                nodes.append(helper.make_node("Identity", [inside.name], [outside]))
        made[attribute.name] = _model_like(
            merged,
            helper.make_graph(
                nodes,
                attribute.name,
                [inputs[u] for u in used if u in inputs],
                list(graph.output),
                [*sub.initializer, *(constants[u] for u in used if u in constants)],
                value_info=list(sub.value_info),
            ),
        )
    return made["else_branch"], made["then_branch"]


def _model_like(model: ModelProto, graph: GraphProto) -> ModelProto:
    from onnx import helper

    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


def _quantize(model: ModelProto, target: Path, scratch: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic asks (with a warning) for its shape-inference pre-pass; the folded model
    # needs none, and says so in the metadata that the check reads.
    onnx.helper.set_model_props(model, {"onnx.quant.pre_process": "onnxruntime.quant"})
    source = scratch / "float.onnx"
    onnx.save(model, str(source))
    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
    )
    source.unlink()


def main() -> None:
    """`python -m asr_worker.engine.moonshine_model`: convert into the cache now (install time)."""
    print(ensure_model())


if __name__ == "__main__":
    main()
