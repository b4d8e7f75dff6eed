"""Moonshine's parts that are plain logic (its vocabulary file, tokens to words, an `.ort` model
read back into ONNX), and its decoder on people speaking at telephone bandwidth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from asr_worker.engine.moonshine import MoonshineDecoder, MoonshineOptions, read_tokenizer, words_of
from asr_worker.engine.moonshine_model import ensure_model
from asr_worker.engine.ort_format import read_model
from tests.integration.test_local_accuracy import not_speech
from tests.support.human_speech import clips, word_errors

SPACE = "\u2581".encode()


def test_the_vocabulary_is_length_prefixed_pieces_and_a_broken_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.bin"
    path.write_bytes(b"\x05<unk>\x03<s>\x04</s>\x01\x00" + bytes([len(SPACE + b"hi")]) + SPACE + b"hi")
    assert read_tokenizer(path) == [b"<unk>", b"<s>", b"</s>", b"\x00", SPACE + b"hi"]
    path.write_bytes(b"\x09short")
    with pytest.raises(ValueError, match="not a Moonshine tokenizer"):
        read_tokenizer(path)


def test_pieces_become_words_with_their_punctuation_and_a_probability() -> None:
    pieces = [SPACE + b"Ten", SPACE + b"of", SPACE + b"cl", b"ubs", b",", SPACE + b"caf", "é".encode()]
    words = words_of(pieces, [-0.1, -0.2, -0.5, -0.1, -0.01, -0.3, -0.3])
    assert [w for w, _p in words] == ["Ten", "of", "clubs,", "café"]
    assert all(0 < p <= 1 for _w, p in words) and words[2][1] == pytest.approx(np.exp(-0.61 / 3))


def test_an_ort_model_reads_back_into_onnx_that_computes_the_same(tmp_path: Path) -> None:
    weight = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y0"]),
            helper.make_node("Relu", ["y0"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3, 4], weight.reshape(-1).tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "tiny.onnx"))
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "tiny.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    onnxruntime.InferenceSession(str(tmp_path / "tiny.onnx"), options, providers=["CPUExecutionProvider"])
    back = read_model((tmp_path / "tiny.ort").read_bytes())
    onnx.checker.check_model(back)
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]], dtype=np.float32)
    run = onnxruntime.InferenceSession(back.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run.run(None, {"x": x})[0], np.maximum(x @ weight, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="not an ONNX Runtime"):
        read_model(b"\x00" * 64)


@pytest.fixture(scope="module")
def decoder() -> MoonshineDecoder:
    return MoonshineDecoder.load(MoonshineOptions(ensure_model()))


def test_people_at_telephone_bandwidth_are_heard_word_for_word_or_nearly(decoder: MoonshineDecoder) -> None:
    import soxr

    errors = words = 0
    for _set, text, audio in clips(with_alsa=False):
        narrow = soxr.resample(soxr.resample(audio, 16000, 8000), 8000, 16000).astype(np.float32)
        (result,) = decoder.decode_batch([narrow])
        assert not result.timed and all(0 < w.probability <= 1 for w in result.words)
        e, n = word_errors(text, result.text)
        errors, words = errors + e, words + n
    assert errors / words <= 0.1, f"{errors} of {words} words wrong"


def test_the_decoder_alone_invents_nothing_from_noise_tones_or_music(decoder: MoonshineDecoder) -> None:
    import soxr

    for name, samples in not_speech().items():
        audio = np.asarray(soxr.resample(samples.astype(np.float32), 8000, 16000), dtype=np.float32)
        (result,) = decoder.decode_batch([audio[: 16000 * 5]])
        assert result.words == (), f"{name}: {result.text!r}"


def test_a_package_whose_files_do_not_match_their_hashes_is_refused(tmp_path: Path) -> None:
    from asr_worker.engine.moonshine_model import SOURCES
    from asr_worker.errors import ModelError

    source = tmp_path / "package"
    source.mkdir()
    for name in SOURCES:
        (source / name).write_bytes(b"not the model")
    with pytest.raises(ModelError, match=r"refusing the packaged Moonshine model: .* has sha256"):
        ensure_model(tmp_path / "cache", source)
    assert not any((tmp_path / "cache").glob("moonshine-*/manifest.json")), "nothing put in place"


def test_a_converted_model_is_trusted_only_while_every_file_matches_its_manifest(tmp_path: Path) -> None:
    import hashlib
    import json

    from asr_worker.engine.moonshine_model import FILES, MANIFEST, verified

    for name in FILES:
        (tmp_path / name).write_bytes(name.encode())
    manifest = {name: hashlib.sha256(name.encode()).hexdigest() for name in FILES}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert verified(tmp_path)
    (tmp_path / FILES[0]).write_bytes(b"damaged")
    assert not verified(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    assert not verified(tmp_path)
