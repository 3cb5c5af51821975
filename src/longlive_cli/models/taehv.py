"""TAEHV tiny video autoencoder for Wan2.1 latents, loading the `taew2_1` weights, with a streaming decoder.

Only 2-D convs: every frame is a row of a folded [B*T, C, H, W] batch (batch-major, time-minor, as taehv's NTCHW).
Time mixes in three ways: a MemBlock sees its input at t and at t - 1 (zeros before the first frame), TPool stacks
s frames into channels and TGrow unfolds channels into s frames. T latents decode to 4T frames; the first 3 are
dropped, so the clip has 1 + 4(T - 1) frames like the Wan VAE's. Streaming keeps each MemBlock's last input frame,
which makes chunked decoding equal to whole-clip decoding at a memory cost that does not grow with length.

Inside, the taehv conventions hold (latents as the weights expect them, pixels in [0, 1]); `decode`, `encode` and
`stream` use the project's: normalised latents [B, 16, T, h, w] and pixels [B, 3, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from longlive_cli.checkpoints import CheckpointError, load_state_dict_into, read_tensors
from longlive_cli.models.vae import LATENT_MEAN, LATENT_STD

Memory = list[Tensor | None]

IMAGE_CHANNELS = 3
# Sequential indices of the layers whose weights reveal the widths and time strides; the decoder's first TGrow
# (index 7) never changes the frame rate, so `decoder_time_upscale` covers the other two.
ENCODER_TPOOLS = (2, 7, 12)
DECODER_TIME_TGROWS = (13, 19)
DECODER_STAGE_CONVS = (1, 8, 14)


@dataclass(frozen=True)
class TAEHVConfig:
    """Defaults are `taew2_1`; narrower widths give cheaper decoders with the same layer indices.

    `raw_latents` marks weights trained on raw Wan latents (`lighttaew2_1`, unverified): the project-convention
    methods then de-normalise before decoding and normalise after encoding.
    """

    latent_channels: int = 16
    decoder_widths: tuple[int, int, int] = (256, 128, 64)
    encoder_width: int = 64
    encoder_time_downscale: tuple[bool, bool, bool] = (True, True, False)
    decoder_time_upscale: tuple[bool, bool] = (True, True)
    decoder_space_upscale: tuple[bool, bool, bool] = (True, True, True)
    raw_latents: bool = False

    @property
    def time_downscale(self) -> int:
        return 2 ** sum(self.encoder_time_downscale)

    @property
    def time_upscale(self) -> int:
        return 2 ** sum(self.decoder_time_upscale)

    @property
    def space_upscale(self) -> int:
        return 2 ** sum(self.decoder_space_upscale)

    @property
    def frames_to_trim(self) -> int:
        """Leading frames of the first latent that precede the clip, so frame counts match the Wan VAE's."""
        return self.time_upscale - 1


def conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """The 3x3 conv, padded to keep the size at stride 1, that every TAEHV stage is made of."""
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3), so outliers cannot blow up the decoder."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual conv block that also sees the previous time step's input."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv(n_in * 2, n_out), nn.ReLU(inplace=True), conv(n_out, n_out), nn.ReLU(inplace=True), conv(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, past: Tensor) -> Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)).add_(self.skip(x)))


class TPool(nn.Module):
    """Merges each run of `stride` frames into one by stacking them as channels."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        return self.conv(x.reshape(-1, self.stride * c, h, w))


class TGrow(nn.Module):
    """Splits each frame into `stride` frames through a 1x1 conv that widens the channels."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)


def apply_layers(layers: nn.Sequential, x: Tensor, batch: int, memory: Memory | None = None) -> Tensor:
    """Runs `layers` on all frames of folded [B*T, C, H, W] input at once; MemBlocks read and refresh `memory`.

    Each MemBlock's past is its input shifted one frame later, led by the frame kept in `memory` from the previous
    call (zeros when there is none); `memory` then keeps this call's last input frame.
    """
    for i, layer in enumerate(layers):
        if isinstance(layer, MemBlock):
            frames = x.unflatten(0, (batch, -1))
            last = memory[i] if memory is not None else None
            first = torch.zeros_like(frames[:, :1]) if last is None else last
            past = torch.cat([first, frames[:, :-1]], 1).flatten(0, 1)
            if memory is not None:
                memory[i] = frames[:, -1:].clone()
            x = layer(x, past)
        else:
            x = layer(x)
    return x


def _latent_stats(like: Tensor) -> tuple[Tensor, Tensor]:
    """Wan's per-channel latent mean and std, shaped to broadcast over [B, 16, T, h, w]."""
    return tuple(s.to(like.device, like.dtype).view(1, -1, 1, 1, 1) for s in (LATENT_MEAN, LATENT_STD))


class TAEHV(nn.Module):
    """Tiny autoencoder; `state_dict()` uses the key names and shapes of `taew2_1.pth`."""

    def __init__(self, cfg: TAEHVConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TAEHVConfig()
        e = cfg.encoder_width
        encoder: list[nn.Module] = [conv(IMAGE_CHANNELS, e), nn.ReLU(inplace=True)]
        for down in cfg.encoder_time_downscale:
            encoder += [TPool(e, 2 if down else 1), conv(e, e, stride=2, bias=False)]
            encoder += [MemBlock(e, e) for _ in range(3)]
        encoder.append(conv(e, cfg.latent_channels))
        self.encoder = nn.Sequential(*encoder)

        widths = cfg.decoder_widths
        decoder: list[nn.Module] = [Clamp(), conv(cfg.latent_channels, widths[0]), nn.ReLU(inplace=True)]
        time_up = (False, *cfg.decoder_time_upscale)
        for i, (n, up_t, up_s) in enumerate(zip(widths, time_up, cfg.decoder_space_upscale, strict=True)):
            decoder += [MemBlock(n, n) for _ in range(3)]
            decoder.append(nn.Upsample(scale_factor=2) if up_s else nn.Identity())
            decoder += [TGrow(n, 2 if up_t else 1), conv(n, widths[min(i + 1, len(widths) - 1)], bias=False)]
        decoder += [nn.ReLU(inplace=True), conv(widths[-1], IMAGE_CHANNELS)]
        self.decoder = nn.Sequential(*decoder)

    def encode_video(self, x: Tensor) -> Tensor:
        """taehv convention: NTCHW pixels in [0, 1], T a multiple of time_downscale -> NTCHW latents; differentiable."""
        b, t = x.shape[:2]
        if t % self.cfg.time_downscale:
            raise ValueError(f"encode_video needs a multiple of {self.cfg.time_downscale} frames, got {t}")
        return apply_layers(self.encoder, x.flatten(0, 1), b).unflatten(0, (b, -1))

    def decode_video(self, z: Tensor, memory: Memory | None = None) -> Tensor:
        """taehv convention: NTCHW latents -> NTCHW pixels in [0, 1], untrimmed (time_upscale x T); differentiable."""
        b = z.shape[0]
        return apply_layers(self.decoder, z.flatten(0, 1), b, memory).clamp(0, 1).unflatten(0, (b, -1))

    def to_model_space(self, z: Tensor) -> Tensor:
        """Normalised latent [B, 16, ...] -> the latent space the weights were trained on."""
        if not self.cfg.raw_latents:
            return z
        mean, std = _latent_stats(z)
        return z * std + mean

    def from_model_space(self, z: Tensor) -> Tensor:
        """The weights' latent space -> the normalised latent [B, 16, ...] the DiT works on."""
        if not self.cfg.raw_latents:
            return z
        mean, std = _latent_stats(z)
        return (z - mean) / std

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """[B, 3, 1 + 4k, H, W] pixels in [-1, 1] -> normalised latent [B, 16, 1 + k, H/8, W/8].

        The first frame is repeated 3 times in front, so latent 0 covers frame 0 alone and latent i frames
        4i - 3 .. 4i: the layout `decode` produces, hence encode(decode(z)) has z's frame count. (taehv's own
        `encode_video` instead pads the end with the last frame when the count is not a multiple of 4.)
        """
        s = self.cfg.time_downscale
        if (video.shape[2] - 1) % s:
            raise ValueError(f"encode needs 1 + {s}k frames, got {video.shape[2]}")
        x = (video.to(self.encoder[0].weight.dtype) + 1) / 2
        x = torch.cat([x[:, :, :1].expand(-1, -1, s - 1, -1, -1), x], 2)
        z = self.encode_video(x.transpose(1, 2)).transpose(1, 2)
        return self.from_model_space(z)

    def decode(self, z: Tensor) -> Tensor:
        """Normalised latent [B, 16, T, h, w] -> pixels [B, 3, 1 + 4(T - 1), 8h, 8w] in [-1, 1], all frames at once."""
        return self.stream()(z)

    def stream(self) -> TAEHVStreamingDecoder:
        """A decoder that carries each MemBlock's last input frame from call to call."""
        return TAEHVStreamingDecoder(self)


class TAEHVStreamingDecoder:
    """Decodes successive latent chunks of a video as if the whole latent were decoded at once.

    Same calling convention as the Wan VAE's `StreamingDecoder`: the first call returns 1 + 4(n - 1) frames for n
    latents, later calls 4n. All frames of a chunk go through each layer together.
    """

    def __init__(self, model: TAEHV) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Forget the history, so that the next call starts a new video."""
        self.memory: Memory = [None] * len(self.model.decoder)
        self.started = False

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        if z.shape[2] == 0:
            raise ValueError("cannot stream an empty latent chunk")
        model = self.model
        z = model.to_model_space(z.to(model.decoder[1].weight.dtype))
        frames = model.decode_video(z.transpose(1, 2), self.memory)
        if not self.started:
            frames = frames[:, model.cfg.frames_to_trim :]
            self.started = True
        return frames.transpose(1, 2).mul(2).sub(1).contiguous()


def _shape(state: dict[str, Tensor], key: str) -> tuple[int, ...]:
    """A tensor's shape, or () when the key is absent so that the strict check reports it."""
    tensor = state.get(key)
    return tuple(tensor.shape) if tensor is not None else ()


def _doubles(shape: tuple[int, ...], out_axis: int) -> bool:
    """Whether a 1x1 conv weight maps n channels to 2n (TGrow, out_axis 0) or 2n to n (TPool, out_axis 1)."""
    return len(shape) == 4 and shape[out_axis] == 2 * shape[1 - out_axis]


def infer_config(state: dict[str, Tensor]) -> TAEHVConfig:
    """The architecture a `taew2_1`-layout state dict was saved from; absent keys fall back to the defaults."""
    default = TAEHVConfig()
    widths = tuple(
        (_shape(state, f"decoder.{i}.weight") or (w,))[0]
        for i, w in zip(DECODER_STAGE_CONVS, default.decoder_widths, strict=True)
    )
    return TAEHVConfig(
        latent_channels=(_shape(state, "decoder.1.weight") or (0, default.latent_channels))[1],
        decoder_widths=widths,
        encoder_width=(_shape(state, "encoder.0.weight") or (default.encoder_width,))[0],
        encoder_time_downscale=tuple(_doubles(_shape(state, f"encoder.{i}.conv.weight"), 1) for i in ENCODER_TPOOLS),
        decoder_time_upscale=tuple(_doubles(_shape(state, f"decoder.{i}.conv.weight"), 0) for i in DECODER_TIME_TGROWS),
    )


def load_taehv(
    path: str | Path,
    *,
    raw_latents: bool = False,
    decoder_time_upscale: tuple[bool, bool] | None = None,
    decoder_space_upscale: tuple[bool, bool, bool] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> TAEHV:
    """Load `taew2_1` (.pth or .safetensors) or a narrower variant, taking the widths from the weight shapes.

    `raw_latents=True` is for `lighttaew2_1`, which appears to decode raw rather than normalised Wan latents
    (unverified on real weights). Turning off time or space upscaling gives a cheaper preview decoder from the same
    file: a disabled TGrow keeps the output channels of its last sub-frame, as taehv does. With
    `memory_format=torch.channels_last` every conv runs channels-last, which cuDNN usually prefers in half precision.
    """
    state = read_tensors(path)
    cfg = replace(infer_config(state), raw_latents=raw_latents)
    if decoder_space_upscale is not None:
        cfg = replace(cfg, decoder_space_upscale=decoder_space_upscale)
    if decoder_time_upscale is not None:
        for i, saved, wanted in zip(DECODER_TIME_TGROWS, cfg.decoder_time_upscale, decoder_time_upscale, strict=True):
            key = f"decoder.{i}.conv.weight"
            if saved and not wanted:
                state[key] = state[key][state[key].shape[0] // 2 :]
            elif wanted and not saved and key in state:
                raise CheckpointError(f"{path}: {key} has no time upscaling to turn on")
        cfg = replace(cfg, decoder_time_upscale=decoder_time_upscale)
    with torch.device("meta"):
        model = TAEHV(cfg)
    load_state_dict_into(model, state, str(path))
    return model.to(device, dtype, memory_format=memory_format).eval()
