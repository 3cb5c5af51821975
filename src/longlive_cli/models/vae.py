"""Wan2.1 3-D causal VAE with the original weight names and a streaming decoder.

Time is causal: pixel frame 0 is coded on its own, then every 4 frames make one latent, so T latents decode to
1 + 4(T - 1) frames. Each causal conv with a temporal kernel keeps the last frames of its own input in a slot of
a plain list (the feature cache), which lets a video be decoded in chunks of any size with the same result as a
whole-clip decode and with memory that does not grow with length.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FeatureCache = list[Tensor | None]

LATENT_MEAN = torch.tensor([
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
])  # fmt: skip
LATENT_STD = torch.tensor([
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
])  # fmt: skip


@dataclass(frozen=True)
class WanVAEConfig:
    """Defaults are the released Wan2.1 VAE (`Wan2.1_VAE.pth`); `dim` scales every width."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] | None = None  # per-channel latent statistics; None means Wan's
    latent_std: tuple[float, ...] | None = None

    @property
    def time_stride(self) -> int:
        return 2 ** sum(self.temperal_downsample)

    @property
    def space_stride(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)


def pixel_frames(latent_frames: int, time_stride: int = 4) -> int:
    """Frames a decode of `latent_frames` latents yields: the first latent is a single frame."""
    return 1 + time_stride * (latent_frames - 1)


def latent_frames(pixel_frames: int, time_stride: int = 4) -> int:
    """Latents an encode of `pixel_frames` frames yields (`pixel_frames` must be 1 + k * time_stride)."""
    if pixel_frames < 1 or (pixel_frames - 1) % time_stride:
        raise ValueError(f"frame count must be 1 + {time_stride}k, got {pixel_frames}")
    return 1 + (pixel_frames - 1) // time_stride


def _use_onednn(x: Tensor) -> bool:
    """On CPU, small 3-D convs fall to PyTorch's slow reference kernel; oneDNN is several times faster."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
    )


class CausalConv3d(nn.Conv3d):
    """Conv3d padded in time on the past side only; with a cache slot it continues the previous call's frames."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
        slot: int | None = None,
    ) -> None:
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_dim, out_dim, kernel_size, stride, padding=(0, ph, pw))
        self.time_pad = 2 * pt
        self.slot = slot

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        """Convs padded in time read and refresh their slot of `cache`; the others need no cache."""
        if self.time_pad:
            history = cache[self.slot]
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0)) if history is None else torch.cat([history, x], 2)
            cache[self.slot] = x[:, :, -self.time_pad :].clone()
        if _use_onednn(x):
            return torch.ops.aten.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


class RMSNorm(nn.Module):
    """Channel-wise L2 normalisation scaled by sqrt(C) and a learned gain, as Wan's RMS_norm."""

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def _fold(x: Tensor) -> Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W], so 2-D layers run on every frame."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _unfold(x: Tensor, b: int) -> Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W] as a view."""
    return x.unflatten(0, (b, -1)).transpose(1, 2)


def _run(layers: nn.Sequential, x: Tensor, cache: FeatureCache) -> Tensor:
    """Applies `layers` in order, handing the feature cache to the causal convs."""
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
    return x


class ResidualBlock(nn.Module):
    """norm-SiLU-conv twice plus a 1x1x1 shortcut when the width changes; the shortcut needs no history."""

    def __init__(self, in_dim: int, out_dim: int, slots: Iterator[int]) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1, slot=next(slots)),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Identity(),  # dropout in the original, kept so that weight names line up
            CausalConv3d(out_dim, out_dim, 3, padding=1, slot=next(slots)),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        return _run(self.residual, x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame; frames never attend to each other."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """`cache` is unused: attention is per frame, so it needs no history."""
        b, c, t, h, w = x.shape
        y = self.to_qkv(self.norm(_fold(x)))
        q, k, v = y.reshape(b * t, 1, 3 * c, h * w).transpose(-1, -2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.proj(y.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w))
        return x + _unfold(y, b)


class Resample(nn.Module):
    """2x spatial down/upsampling per frame, with an optional causal 2x step in time (modes as in Wan)."""

    def __init__(self, dim: int, mode: str, slots: Iterator[int]) -> None:
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(dim, dim // 2, 3, padding=1))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0), slot=next(slots))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
            self.slot = next(slots)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        b = x.shape[0]
        frames = self._upsample_time(x, cache) if self.mode == "upsample3d" else _fold(x)
        x = _unfold(self.resample(frames), b)
        return self._downsample_time(x, cache) if self.mode == "downsample3d" else x

    def _upsample_time(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """Doubles the frames, folded to [B*T, C, H, W]; the clip's first frame passes through alone."""
        b, c = x.shape[:2]
        slot = self.time_conv.slot
        first = None
        if cache[slot] is None:
            first, x = _fold(x[:, :, :1]), x[:, :, 1:]
            cache[slot] = first.new_zeros(b, c, self.time_conv.time_pad, *x.shape[3:])
        t = x.shape[2]
        if t == 0:
            return first
        y = self.time_conv(x, cache).unflatten(1, (2, c)).permute(0, 3, 1, 2, 4, 5).reshape(b * t * 2, c, *x.shape[3:])
        if first is None:
            return y
        return torch.cat([first.unflatten(0, (b, 1)), y.unflatten(0, (b, 2 * t))], 1).flatten(0, 1)

    def _downsample_time(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """Halves the frames; the clip's first frame is kept alone, so it must arrive in a call by itself."""
        history, cache[self.slot] = cache[self.slot], x[:, :, -1:].clone()
        if history is None:
            return x
        return self.time_conv(torch.cat([history, x], 2))


class Encoder3d(nn.Module):
    """Pixels -> mean and log-variance; module indices follow Wan's so weight names match."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        slots = itertools.count()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1, slot=next(slots))
        blocks: list[nn.Module] = []
        scale = 1.0
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim, slots))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                mode = "downsample3d" if cfg.temperal_downsample[i] else "downsample2d"
                blocks.append(Resample(out_dim, mode, slots))
                scale /= 2.0
        self.downsamples = nn.Sequential(*blocks)
        self.middle = nn.Sequential(
            ResidualBlock(out_dim, out_dim, slots), AttentionBlock(out_dim), ResidualBlock(out_dim, out_dim, slots)
        )
        self.head = nn.Sequential(
            RMSNorm(out_dim), nn.SiLU(), CausalConv3d(out_dim, cfg.z_dim * 2, 3, padding=1, slot=next(slots))
        )
        self.num_slots = next(slots)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        x = self.conv1(x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        return _run(self.head, x, cache)


class Decoder3d(nn.Module):
    """Raw latent -> pixels; module indices follow Wan's so weight names match."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        slots = itertools.count()
        temperal_upsample = cfg.temperal_downsample[::-1]
        dims = [cfg.dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1, slot=next(slots))
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0], slots), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0], slots)
        )
        blocks: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            if i > 0:
                in_dim //= 2  # every upsampling Resample halves the channels
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim, slots))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                mode = "upsample3d" if temperal_upsample[i] else "upsample2d"
                blocks.append(Resample(out_dim, mode, slots))
                scale *= 2.0
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(RMSNorm(out_dim), nn.SiLU(), CausalConv3d(out_dim, 3, 3, padding=1, slot=next(slots)))
        self.num_slots = next(slots)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        x = self.conv1(x, cache)
        for block in (*self.middle, *self.upsamples):
            x = block(x, cache)
        return _run(self.head, x, cache)


class WanVAE(nn.Module):
    """Wan2.1 VAE; `state_dict()` uses the key names and shapes of `Wan2.1_VAE.pth`."""

    def __init__(self, cfg: WanVAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or WanVAEConfig()
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)

    def normalize(self, mu: Tensor) -> Tensor:
        """Raw latent -> the per-channel standardised latent the DiT works on."""
        mean, inv_std = self._latent_stats(mu)
        return (mu - mean) * inv_std

    def denormalize(self, z: Tensor) -> Tensor:
        """Standardised latent -> raw latent the decoder expects."""
        mean, inv_std = self._latent_stats(z)
        return z / inv_std + mean

    def _latent_stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Config values rather than buffers, so that a model built on the meta device keeps them."""
        cfg = self.cfg
        mean = LATENT_MEAN if cfg.latent_mean is None else torch.tensor(cfg.latent_mean)
        std = LATENT_STD if cfg.latent_std is None else torch.tensor(cfg.latent_std)
        shape = (1, -1, 1, 1, 1)
        return mean.to(like.device, like.dtype).view(shape), (1.0 / std).to(like.device, like.dtype).view(shape)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """[B, 3, 1 + 4k, H, W] pixels in [-1, 1] -> normalised mean latent [B, z_dim, 1 + k, H/8, W/8]."""
        s = self.cfg.time_stride
        if (video.shape[2] - 1) % s:
            raise ValueError(f"encode needs 1 + {s}k frames, got {video.shape[2]}")
        cache: FeatureCache = [None] * self.encoder.num_slots
        chunks = [video[:, :, :1], *video[:, :, 1:].split(s, dim=2)]
        h = torch.cat([self.encoder(chunk, cache) for chunk in chunks], 2)
        mu = self.conv1(h)[:, : self.cfg.z_dim]
        return self.normalize(mu)

    def decode(self, z: Tensor, clamp: bool = False) -> Tensor:
        """Normalised latent [B, z_dim, T, h, w] -> pixels [B, 3, 1 + 4(T - 1), 8h, 8w], one latent at a time."""
        video = self.stream()(z)
        return video.clamp_(-1, 1) if clamp else video

    def channels_last(self, enabled: bool = True) -> WanVAE:
        """Convolution weights in channels-last layout, so that cuDNN picks its NHWC kernels without layout copies."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                layout = (torch.channels_last_3d if m.weight.dim() == 5 else torch.channels_last) if enabled else None
                m.weight.data = m.weight.data.contiguous(memory_format=layout or torch.contiguous_format)
        return self

    def stream(self, step: int | None = 1) -> StreamingDecoder:
        """A decoder that carries its feature cache from call to call."""
        return StreamingDecoder(self, step)


class StreamingDecoder:
    """Decodes successive latent chunks of a video as if the whole latent were decoded at once.

    The first call returns 1 + 4(n - 1) frames for n latents, later calls 4n. `step` is how many latents go
    through the decoder together: 1 is Wan's own one-latent loop and needs the least memory; larger steps (or
    None, the whole chunk) give bigger kernels for more activation memory, equal up to float rounding.
    """

    def __init__(self, vae: WanVAE, step: int | None = 1) -> None:
        self.vae = vae
        self.step = step
        self.reset()

    def reset(self) -> None:
        """Forget the history, so that the next call starts a new video."""
        self.cache: FeatureCache = [None] * self.vae.decoder.num_slots

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        x = self.vae.conv2(self.vae.denormalize(z))
        step = self.step or x.shape[2]
        outs = [self.vae.decoder(part, self.cache) for part in x.split(step, dim=2)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 2)
