import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longlive_cli.models.t5 import UMT5Config, UMT5Encoder, relative_position_bucket, remap_hf_umt5_keys
from longlive_cli.models.text import TextEncoder, UMT5TextEncoder, clean_prompt, load_umt5_tokenizer

GOLDEN = Path(__file__).parent / "data" / "golden" / "umt5_encoder.safetensors"
WORDS = [f"w{i}" for i in range(3, 100)]


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN)


@pytest.fixture(scope="module")
def golden_weights(golden) -> dict[str, torch.Tensor]:
    return {k.removeprefix("weights."): v for k, v in golden.items() if k.startswith("weights.")}


def write_tokenizer(folder: Path, post_processor: bool = True) -> Path:
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i for i, w in enumerate(WORDS, start=3)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    if post_processor:
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_relative_position_bucket_matches_formula():
    def expected(r: int) -> int:
        a = abs(r)
        b = a if a < 8 else min(15, 8 + math.floor(math.log(a / 8) / math.log(128 / 8) * 8))
        return 16 * (r > 0) + b

    rel = torch.arange(-600, 601)
    got = relative_position_bucket(rel, 32, 128).tolist()
    assert got == [expected(r) for r in rel.tolist()]
    spot = relative_position_bucket(torch.tensor([0, 1, -1, 7, 8, -12, 60, 128, -5000]))
    assert spot.tolist() == [0, 17, 1, 23, 24, 9, 29, 31, 15]


def test_full_size_layout_on_meta():
    with torch.device("meta"):
        model = UMT5Encoder(UMT5Config())
    sd = model.state_dict()
    assert len(sd) == 242
    assert sum(t.numel() for t in sd.values()) == 5_680_910_336
    assert sd["blocks.23.pos_embedding.embedding.weight"].shape == (32, 64)
    assert sd["blocks.0.ffn.gate.0.weight"].shape == (10240, 4096)


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    hf = {
        "shared.weight": sd["token_embedding.weight"],
        "encoder.embed_tokens.weight": sd["token_embedding.weight"],
    }
    hf["encoder.final_layer_norm.weight"] = sd["norm.weight"]
    n_layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for n in range(n_layers):
        a, f = f"encoder.block.{n}.layer.0.", f"encoder.block.{n}.layer.1."
        hf[a + "layer_norm.weight"] = sd[f"blocks.{n}.norm1.weight"]
        for p in "qkvo":
            hf[a + f"SelfAttention.{p}.weight"] = sd[f"blocks.{n}.attn.{p}.weight"]
        hf[a + "SelfAttention.relative_attention_bias.weight"] = sd[f"blocks.{n}.pos_embedding.embedding.weight"]
        hf[f + "layer_norm.weight"] = sd[f"blocks.{n}.norm2.weight"]
        hf[f + "DenseReluDense.wi_0.weight"] = sd[f"blocks.{n}.ffn.gate.0.weight"]
        hf[f + "DenseReluDense.wi_1.weight"] = sd[f"blocks.{n}.ffn.fc1.weight"]
        hf[f + "DenseReluDense.wo.weight"] = sd[f"blocks.{n}.ffn.fc2.weight"]
    return hf


def test_hf_key_remap_round_trip(golden_weights):
    back = remap_hf_umt5_keys(to_hf(golden_weights))
    assert back.keys() == golden_weights.keys()
    assert all(torch.equal(back[k], v) for k, v in golden_weights.items())
    assert remap_hf_umt5_keys(golden_weights).keys() == golden_weights.keys()
    UMT5Encoder(UMT5Config.from_state_dict(back)).load_state_dict(back)


def test_clean_prompt():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"


def test_clean_prompt_without_ftfy(monkeypatch):
    monkeypatch.setitem(sys.modules, "ftfy", None)
    assert clean_prompt(" a &amp;amp; b\n c ") == "a & b c"


@pytest.fixture
def encoder(tmp_path, golden_weights) -> UMT5TextEncoder:
    return UMT5TextEncoder.from_state_dict(write_tokenizer(tmp_path / "umt5-xxl"), golden_weights, text_len=16)


def test_tokenize_appends_one_eos_and_pads(encoder):
    ids, mask = encoder.tokenize(["w5 w6  w7", " ".join(WORDS)])
    assert ids.shape == mask.shape == (2, 16)
    assert ids[0].tolist() == [5, 6, 7, 1] + [0] * 12
    assert mask[0].tolist() == [1] * 4 + [0] * 12
    assert ids[1].tolist() == list(range(3, 18)) + [1]
    assert mask[1].all()


def test_missing_post_processor_still_gets_one_eos(tmp_path):
    tok = load_umt5_tokenizer(write_tokenizer(tmp_path, post_processor=False))
    enc = UMT5TextEncoder(
        tok, UMT5Encoder(UMT5Config(vocab=100, dim=8, dim_attn=8, dim_ffn=8, num_heads=2, num_layers=1)), 6
    )
    ids, _ = enc.tokenize(["w3 w4"])
    assert ids.tolist() == [[3, 4, 1, 0, 0, 0]]


def test_encode_end_to_end(encoder, golden_weights):
    assert isinstance(encoder, TextEncoder)
    assert (encoder.text_len, encoder.text_dim) == (16, 32)
    prompts = ["w10 w20 w30", "w40 w41 w42 w43 w44 w45"]
    out = encoder.encode(prompts)
    assert out.shape == (2, 16, 32)
    assert out[0, 4:].abs().max() == 0 and out[1, 7:].abs().max() == 0
    assert out[0, :4].abs().min() > 0 and out[1, :7].abs().min() > 0

    model = UMT5Encoder(UMT5Config.from_state_dict(golden_weights))
    model.load_state_dict(golden_weights)
    ids, mask = encoder.tokenize(prompts)
    with torch.no_grad():
        raw = model(ids, mask)
    assert raw[0, 4:].abs().max() > 0
    torch.testing.assert_close(out[0, :4], raw[0, :4], rtol=0, atol=1e-6)

    again = encoder.encode([prompts[1], prompts[0], prompts[1]])
    assert torch.equal(again[0], out[1]) and torch.equal(again[1], out[0]) and torch.equal(again[2], out[1])
    encoder.cache_size = 0
    assert torch.equal(encoder.encode(prompts[:1])[0], out[0])


def test_missing_tokenizer_folder_is_named(tmp_path, golden_weights):
    folder = tmp_path / "no-such-umt5"
    with pytest.raises(FileNotFoundError, match="no-such-umt5"):
        UMT5TextEncoder.from_state_dict(folder, golden_weights)
