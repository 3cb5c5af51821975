"""What a model is (DiT + VAE + text encoder + native settings) and how to load one.

Three sources: the embedded ``tiny`` model, a converted single ``.safetensors`` file (``longlive convert``),
and a directory laid out as a user has it after downloading Wan2.1-T2V-1.3B and LongLive.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch

from .checkpoints import (
    CheckpointError,
    check_finite,
    check_state_dict,
    load_state_dict_into,
    merge_lora,
    read_dit_state_dict,
    read_lora,
    read_safetensors_metadata,
    read_tensors,
    save_safetensors,
)
from .download import is_hub_id
from .engine import EngineConfig, SinkMode
from .models.dit import CausalWanDiT, DiTConfig
from .models.t5 import UMT5Config, UMT5Encoder, remap_hf_umt5_keys
from .models.taehv import TAEHV, TAEHVConfig
from .models.text import UMT5TextEncoder
from .models.vae import WanVAE, WanVAEConfig, pixel_frames
from .specs import dit_config_from_json, spec_from_json, tokenizer_from_file, tokenizer_from_str

FORMAT = "longlive-cli/1"
EMBEDDED = "tiny"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and native settings of a model, stored as JSON beside its weights."""

    name: str
    dit: DiTConfig = field(default_factory=DiTConfig)
    vae: WanVAEConfig = field(default_factory=WanVAEConfig)
    text: UMT5Config = field(default_factory=UMT5Config)
    text_len: int = 512
    engine: EngineConfig = field(default_factory=EngineConfig)
    fps: int = 16
    size: tuple[int, int] = (832, 480)
    fast_decoder: TAEHVConfig | None = None
    decoder: str = "wan"
    # The words a closed-vocabulary model understands, by attribute, for unknown-word warnings; empty for umT5.
    vocabulary: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The only sizes a model trained at one size renders its world at (elsewhere it loses the object); empty: any.
    sizes: tuple[tuple[int, int], ...] = ()

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one latent frame at the native size."""
        return self.latent_shape_for(self.size)

    def latent_shape_for(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """(channels, height, width) of one latent frame of a WxH video (a size ``check_size`` accepts)."""
        w, h = size
        s = self.vae.space_stride
        return self.vae.z_dim, h // s, w // s

    @property
    def frame_tokens(self) -> int:
        """DiT tokens of one latent frame at the native size: what attention and KV memory scale with."""
        _, h, w = self.latent_shape
        _, ph, pw = self.dit.patch_size
        return (h // ph) * (w // pw)

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this: one DiT patch of latent pixels, in video pixels."""
        return self.vae.space_stride * max(self.dit.patch_size[1:])

    @property
    def time_stride(self) -> int:
        """Video frames per latent frame after the first."""
        return self.vae.time_stride

    def video_frames(self, latent_frames: int) -> int:
        """Video frames that ``latent_frames`` latent frames decode to: 1 + time_stride (T - 1)."""
        if latent_frames < 1:
            raise ValueError(f"need at least one latent frame, got {latent_frames}")
        return pixel_frames(latent_frames, self.time_stride)

    def check_size(self, size: tuple[int, int]) -> None:
        """A ValueError, naming the nearest sizes that work, unless this model can render WxH."""
        m = self.size_multiple
        for name, side in zip(("width", "height"), size, strict=True):
            if side <= 0 or side % m:
                lower = max(m, side // m * m)
                raise ValueError(f"{name} {side} is not a positive multiple of {m} (try {lower} or {lower + m})")
        if self.sizes and tuple(size) not in self.sizes:
            known = " or ".join(f"{w}x{h}" for w, h in self.sizes)
            raise ValueError(
                f"{self.name} renders only {known}: it was trained at that size and loses its object at others"
            )

    def to_json(self) -> str:
        d = asdict(self)
        d["dit"] = self.dit.to_dict()
        d["engine"]["sink_mode"] = self.engine.sink_mode.value
        d["vocabulary"] = {name: list(words) for name, words in self.vocabulary}
        d["sizes"] = [list(size) for size in self.sizes]
        return json.dumps(d, indent=2)

    def __post_init__(self) -> None:
        if self.decoder not in ("wan", "fast"):
            raise ValueError(f"decoder must be 'wan' or 'fast', got {self.decoder!r}")
        if self.decoder == "fast" and self.fast_decoder is None:
            raise ValueError("a model whose default decoder is 'fast' needs a fast_decoder config")

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        d = json.loads(text)
        engine = dict(d["engine"], steps=tuple(d["engine"]["steps"]), sink_mode=SinkMode(d["engine"]["sink_mode"]))
        vae = {k: tuple(v) if isinstance(v, list) else v for k, v in d["vae"].items()}
        return cls(
            name=d["name"],
            dit=DiTConfig.from_dict(d["dit"]),
            vae=WanVAEConfig(**vae),
            text=UMT5Config(**d["text"]),
            text_len=d["text_len"],
            engine=EngineConfig(**engine),
            fps=d["fps"],
            size=tuple(d["size"]),
            fast_decoder=_taehv_config(d.get("fast_decoder")),
            decoder=d.get("decoder", "wan"),
            vocabulary=tuple((name, tuple(words)) for name, words in d.get("vocabulary", {}).items()),
            sizes=tuple(tuple(size) for size in d.get("sizes", [])),
        )


def _taehv_config(d: dict | None) -> TAEHVConfig | None:
    return None if d is None else TAEHVConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


LONGLIVE_13B = ModelSpec(name="longlive-1.3b")
WAN_14B = replace(LONGLIVE_13B, name="wan-14b", dit=DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40))
# Architectures by name, without weights: for --plan, bench --random-weights and tests.
PRESETS: dict[str, ModelSpec] = {spec.name: spec for spec in (LONGLIVE_13B, WAN_14B)}


@dataclass
class Bundle:
    """A loaded model, ready for the engine, decoder and text encoder."""

    spec: ModelSpec
    dit: CausalWanDiT
    vae: WanVAE
    text: UMT5TextEncoder
    source: str
    fast_decoder: TAEHV | None = None

    def decoder(self, choice: str = "auto") -> WanVAE | TAEHV:
        """The latent decoder to stream with: ``wan`` (exact), ``fast`` (TAEHV-class), or the model's default."""
        choice = self.spec.decoder if choice == "auto" else choice
        if choice == "wan":
            return self.vae
        if choice == "fast" and self.fast_decoder is not None:
            return self.fast_decoder
        raise CheckpointError(f"{self.source}: this model has no fast decoder; pass --decoder FILE (taew2_1 format)")


def build_modules(spec: ModelSpec, device: str | torch.device = "meta") -> tuple[CausalWanDiT, WanVAE, UMT5Encoder]:
    """Empty modules of a spec's sizes (on the meta device by default, so loading allocates once)."""
    with torch.device(device):
        return CausalWanDiT(spec.dit), WanVAE(spec.vae), UMT5Encoder(spec.text)


def _finish(
    spec: ModelSpec,
    dit: CausalWanDiT,
    vae: WanVAE,
    text: UMT5TextEncoder,
    source: str,
    device,
    dtype,
    fast: TAEHV | None = None,
) -> Bundle:
    dit = dit.to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae = vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if vae.conv2.weight.is_cuda:
        vae.channels_last()
    if fast is not None:
        fast = fast.to(device=device, dtype=dtype).eval().requires_grad_(False)
    text.model = text.model.to(device=device, dtype=torch.float32 if dtype == torch.float16 else dtype).eval()
    text.model.requires_grad_(False)
    return Bundle(spec, dit, vae, text, source, fast)


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def save_bundle(
    path: str | Path,
    spec: ModelSpec,
    dit: dict,
    vae: dict,
    text: dict,
    tokenizer_json: str,
    dtype=None,
    fast_decoder: dict | None = None,
) -> None:
    """Write one pickle-free file: prefixed weights, the spec and the tokenizer in the header, spec JSON beside."""
    if (fast_decoder is None) != (spec.fast_decoder is None):
        raise ValueError("fast decoder weights and spec.fast_decoder must be given together")
    state = {}
    parts = (("dit.", dit), ("vae.", vae), ("text.", text), ("fast_decoder.", fast_decoder or {}))
    for prefix, part in parts:
        for k, v in part.items():
            state[prefix + k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    meta = {"format": FORMAT, "spec": spec.to_json(), "tokenizer": tokenizer_json}
    save_safetensors(state, path, meta)
    Path(path).with_suffix(".json").write_text(spec.to_json() + "\n")


def read_bundle_spec(path: str | Path) -> ModelSpec:
    """The spec stored in a converted file, or a CheckpointError saying what the file is not."""
    meta = read_safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a longlive-cli model file (no '{FORMAT}' header); see `longlive convert`")
    if "spec" not in meta:
        raise CheckpointError(f"{path}: the header has no model spec; convert the model again")
    spec = spec_from_json(meta["spec"], f"{path} [spec]")
    return _completed_beside(Path(path), spec)


# Spec fields newer than the embedded model's header: its JSON beside the weights holds them.
LATER_FIELDS = ("vocabulary", "sizes")


def _completed_beside(path: Path, spec: ModelSpec) -> ModelSpec:
    """The spec with the fields its header predates taken from the JSON that ``save_bundle`` wrote beside it."""
    missing = [name for name in LATER_FIELDS if not getattr(spec, name)]
    if not missing:
        return spec
    beside = path.with_suffix(".json")
    try:
        other = spec_from_json(beside.read_text(encoding="utf-8"), str(beside))
    except (OSError, UnicodeError, CheckpointError):
        return spec
    return replace(spec, **{name: getattr(other, name) for name in missing}) if other.name == spec.name else spec


def read_tokenizer(model: str | Path):
    """A model's tokenizer without its weights, to check prompts; None for a download folder (umT5 spells any word)."""
    source = locate_model(model)
    if source.kind != "converted":
        return None
    path = source.location
    return tokenizer_from_str(read_safetensors_metadata(path).get("tokenizer", ""), f"{path} [tokenizer]")


def load_converted(path: str | Path, device="cpu", dtype=torch.float32) -> Bundle:
    """Load a file written by ``save_bundle``."""
    spec = read_bundle_spec(path)
    meta = read_safetensors_metadata(path)
    tokenizer = tokenizer_from_str(meta.get("tokenizer", ""), f"{path} [tokenizer]")
    state = read_tensors(path)
    check_finite(state, str(path))
    dit, vae, t5 = build_modules(spec)
    load_state_dict_into(dit, _split(state, "dit."), f"{path} [dit]")
    load_state_dict_into(vae, _split(state, "vae."), f"{path} [vae]")
    load_state_dict_into(t5, _split(state, "text."), f"{path} [text]")
    fast = None
    if spec.fast_decoder is not None:
        with torch.device("meta"):
            fast = TAEHV(spec.fast_decoder)
        load_state_dict_into(fast, _split(state, "fast_decoder."), f"{path} [fast_decoder]")
    text = UMT5TextEncoder(tokenizer, t5, spec.text_len)
    return _finish(spec, dit, vae, text, str(path), device, dtype, fast)


def embedded_path() -> Path:
    """Where the embedded tiny model lives inside the installed package."""
    return Path(str(resources.files("longlive_cli") / "assets" / "tiny.safetensors"))


@dataclass(frozen=True)
class DownloadLayout:
    """The files of a Wan2.1-T2V-1.3B download plus LongLive's generator and LoRA."""

    wan_dir: Path
    generator: Path | None
    lora: Path | None

    @property
    def dit(self) -> Path:
        sharded = self.wan_dir / "diffusion_pytorch_model.safetensors.index.json"
        return sharded if sharded.exists() else self.wan_dir / "diffusion_pytorch_model.safetensors"

    @property
    def vae(self) -> Path:
        return self.wan_dir / "Wan2.1_VAE.pth"

    @property
    def t5(self) -> Path:
        return self.wan_dir / "models_t5_umt5-xxl-enc-bf16.pth"

    @property
    def tokenizer(self) -> Path:
        return self.wan_dir / "google" / "umt5-xxl"


WAN_NAME = "Wan2.1-T2V-1.3B"


def find_layout(*roots: str | Path) -> DownloadLayout:
    """Locate the Wan folder and LongLive files under the given folders (LongLive's repo layout or flat folders)."""
    dirs = [model_path(r) for r in roots]
    for d in dirs:
        if not d.is_dir():
            raise CheckpointError(f"{d}: model directory not found")
    wan_candidates = [c for d in dirs for c in (d, d / "wan_models" / WAN_NAME, d / WAN_NAME)]
    wan_dir = next((c for c in wan_candidates if (c / "config.json").is_file()), None)
    if wan_dir is None:
        tried = ", ".join(str(c / "config.json") for c in wan_candidates)
        raise CheckpointError(f"{dirs[0]}: no {WAN_NAME} folder found (looked for {tried})")
    ll_candidates = [c for d in dirs for c in (d / "longlive_models" / "models", d / "models", d)]
    generator = next((c / "longlive_base.pt" for c in ll_candidates if (c / "longlive_base.pt").is_file()), None)
    lora = next((c / "lora.pt" for c in ll_candidates if (c / "lora.pt").is_file()), None)
    if generator is not None and lora is None:
        raise CheckpointError(
            f"{generator.parent}: lora.pt is missing; LongLive's generator needs its LoRA beside longlive_base.pt"
        )
    layout = DownloadLayout(wan_dir, generator, lora)
    needed = (layout.vae, layout.t5, layout.tokenizer / "tokenizer.json") + (() if generator else (layout.dit,))
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise CheckpointError(f"{wan_dir}: incomplete {WAN_NAME} download, missing {', '.join(map(str, missing))}")
    return layout


def vae_config_of(state: dict[str, torch.Tensor], source: str) -> WanVAEConfig:
    """Widths of a Wan-layout VAE read off its weights (narrow variants such as LightVAE share the layout)."""
    try:
        return WanVAEConfig(dim=state["encoder.conv1.weight"].shape[0], z_dim=state["conv2.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"{source}: not a Wan VAE state dict (no {e.args[0]})") from None


def read_download(layout: DownloadLayout, prefer_ema: bool = False, lora_alpha: float | None = None):
    """Spec and state dicts of a download, with the LongLive generator and its LoRA merged in."""
    config = layout.wan_dir / "config.json"
    try:
        dit_cfg = dit_config_from_json(config.read_text(encoding="utf-8"), str(config))
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config}: cannot read the config ({e})") from None
    name = "longlive-1.3b" if layout.generator else "wan2.1"
    spec = replace(LONGLIVE_13B, dit=dit_cfg, text_len=dit_cfg.text_len, name=name)
    dit_path = layout.generator or layout.dit
    dit = read_dit_state_dict(dit_path, prefer_ema=prefer_ema)
    with torch.device("meta"):
        check_state_dict(dit, CausalWanDiT(dit_cfg), str(dit_path))
    if layout.lora is not None:
        dit = merge_lora(dit, read_lora(layout.lora, alpha=lora_alpha))
    vae = read_tensors(layout.vae)
    t5 = remap_hf_umt5_keys(read_tensors(layout.t5))
    spec = replace(spec, text=UMT5Config.from_state_dict(t5), vae=vae_config_of(vae, str(layout.vae)))
    for state, source in ((dit, dit_path), (vae, layout.vae), (t5, layout.t5)):
        check_finite(state, str(source))
    return spec, dit, vae, t5


def load_download(root: str | Path | list[Path], device="cpu", dtype=torch.float32, **kw) -> Bundle:
    """Load a Wan + LongLive download directory (or the folders of one, as the hub cache keeps them)."""
    roots = root if isinstance(root, list) else [root]
    layout = find_layout(*roots)
    spec, dit_sd, vae_sd, t5_sd = read_download(layout, **kw)
    dit, vae, t5 = build_modules(spec)
    load_state_dict_into(dit, dit_sd, str(layout.generator or layout.dit))
    load_state_dict_into(vae, vae_sd, str(layout.vae))
    load_state_dict_into(t5, t5_sd, str(layout.t5))
    text = UMT5TextEncoder(tokenizer_from_file(layout.tokenizer / "tokenizer.json"), t5, spec.text_len)
    return _finish(spec, dit, vae, text, " + ".join(map(str, roots)), device, dtype)


def model_path(model: str | Path) -> Path:
    """A model path with ``~`` expanded, or a CheckpointError when ``~user`` names no user."""
    try:
        return Path(model).expanduser()
    except RuntimeError:
        raise CheckpointError(f"{model}: cannot expand '~': no such user's home folder") from None


@dataclass(frozen=True)
class ModelSource:
    """Where a model is: a hub id, a download directory, or a converted file (the embedded model is one)."""

    kind: str  # "hub" | "download" | "converted"
    location: str | Path


def locate_model(model: str | Path) -> ModelSource:
    """Which of the three sources ``model`` names: the one dispatch that loading and reading a spec share."""
    if is_hub_id(model):
        return ModelSource("hub", str(model))
    if str(model) == EMBEDDED:
        path = embedded_path()
        if not path.is_file():
            raise CheckpointError(f"{path}: the embedded tiny model is missing from this installation")
        return ModelSource("converted", path)
    path = model_path(model)
    if path.is_dir():
        return ModelSource("download", path)
    if not path.exists():
        raise CheckpointError(f"{path}: model not found (expected 'tiny', a model directory or a .safetensors file)")
    return ModelSource("converted", path)


def load_bundle(model: str | Path, device="cpu", dtype=torch.float32, **kw) -> Bundle:
    """Load ``tiny``, a converted ``.safetensors`` file, a download directory, or a hub id (fetched once, cached)."""
    source = locate_model(model)
    if source.kind == "hub":
        from .download import fetch

        root = fetch(source.location, say=lambda line: print(line, file=sys.stderr))
        return load_download(root, device, dtype, **kw)
    if source.kind == "download":
        return load_download(source.location, device, dtype, **kw)
    return load_converted(source.location, device, dtype)


def read_spec(model: str | Path) -> ModelSpec:
    """A model's spec without loading its weights (checks that the model exists)."""
    source = locate_model(model)
    if source.kind == "hub":
        from .download import WAN, repos_of

        repos_of(source.location)
        return LONGLIVE_13B if source.location != WAN else replace(LONGLIVE_13B, name="wan2.1")
    if source.kind == "download":
        find_layout(source.location)
        return LONGLIVE_13B
    return read_bundle_spec(source.location)


def convert(
    roots: str | Path | list[str | Path], out: str | Path, dtype: torch.dtype = torch.bfloat16, **kw
) -> ModelSpec:
    """Merge a download (generator + LoRA) into one pickle-free file that loads fast."""
    layout = find_layout(*(roots if isinstance(roots, list) else [roots]))
    tokenizer_file = layout.tokenizer / "tokenizer.json"
    tokenizer_from_file(tokenizer_file)
    spec, dit, vae, t5 = read_download(layout, **kw)
    tokenizer = tokenizer_file.read_text(encoding="utf-8")
    save_bundle(out, spec, dit, vae, t5, tokenizer, dtype=dtype)
    return spec
