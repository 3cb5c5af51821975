"""`longlive download` and hub ids for --model, against a hub stand-in on 127.0.0.1 (no test reaches the network)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longlive_cli.download import LONGLIVE, WAN, _size, is_hub_id

from .fakes import write_download
from .hub_server import Hub, HubServer, repo_from_folder

NEEDED_WAN = {"config.json", "Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json"}
NEEDED_LONGLIVE = {"models/longlive_base.pt", "models/lora.pt"}
# Bigger than huggingface_hub's 10 MiB download chunk, so that a transfer cut after it resumes mid-file.
BIG = 3_000_000


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The two repositories in the released layout, with tiny weights in the real formats and files not needed."""
    root = tmp_path_factory.mktemp("released")
    write_download(root)
    base = root / "longlive_models" / "models" / "longlive_base.pt"
    checkpoint = torch.load(base, weights_only=True)
    checkpoint["generator_ema"] = {"padding": torch.zeros(BIG)}  # as released: an EMA copy beside the generator
    torch.save(checkpoint, base)
    wan = repo_from_folder(root / "wan_models" / "Wan2.1-T2V-1.3B")
    wan |= {"README.md": b"# Wan", "assets/logo.png": b"\x89PNG" * 100, "google/umt5-xxl/spiece.model": b"s" * 999}
    longlive = repo_from_folder(root / "longlive_models") | {"README.md": b"# LongLive"}
    return {WAN: wan, LONGLIVE: longlive}


def cli(server: HubServer, home: Path, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env |= {"HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    cmd = [sys.executable, "-m", "longlive_cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=home.parent)


def fetched(hub: Hub) -> set[str]:
    return {path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path, _ in hub.requests
            if method == "GET" and "/resolve/" in path}  # fmt: skip


def test_hub_ids_are_owner_slash_name_that_is_not_a_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id(LONGLIVE) and is_hub_id(WAN)
    assert not is_hub_id("tiny") and not is_hub_id("./a/b") and not is_hub_id("/models/x")
    (tmp_path / "models" / "LongLive").mkdir(parents=True)
    assert not is_hub_id("models/LongLive")


def test_download_fetches_only_what_the_loader_reads_after_saying_how_much(tmp_path, repos):
    hub = Hub(repos)
    with HubServer(hub) as server:
        result = cli(server, tmp_path / "hf", "download")
    assert result.returncode == 0, result.stderr
    assert fetched(hub) == NEEDED_WAN | NEEDED_LONGLIVE, "no README, no assets, no Wan DiT (LongLive's replaces it)"
    size = sum(len(repos[WAN][f]) for f in NEEDED_WAN) + sum(len(repos[LONGLIVE][f]) for f in NEEDED_LONGLIVE)
    assert f"{LONGLIVE}: 6 files, {_size(size)} to download into {tmp_path / 'hf' / 'hub'}" in result.stderr
    snapshots = [Path(line.strip()) for line in result.stdout.splitlines()[1:]]
    assert (snapshots[0] / "Wan2.1_VAE.pth").read_bytes() == repos[WAN]["Wan2.1_VAE.pth"]
    assert all(str(s).startswith(str(tmp_path / "hf" / "hub")) for s in snapshots)


def test_a_dropped_connection_resumes_and_a_rerun_fetches_only_what_is_missing(tmp_path, repos):
    hub = Hub(repos)
    name = "models/longlive_base.pt"
    hub.cut_after[name] = 10 * 2**20 + 1000
    hub.failing.add("models/lora.pt")
    with HubServer(hub) as server:
        first = cli(server, tmp_path / "hf", "download")
        assert first.returncode == 1 and "run the command again" in first.stderr.splitlines()[-1]
        transfers = [r for r in hub.served(name.split("/")[-1])]
        assert [r[2] for r in transfers] == [None, f"bytes={10 * 2**20}-"], "resumed where the connection dropped"
        hub.failing.clear()
        hub.requests.clear()
        second = cli(server, tmp_path / "hf", "download")
    assert second.returncode == 0, second.stderr
    assert fetched(hub) == {"models/lora.pt"}, "what the first run finished is kept"
    blob = Path(second.stdout.splitlines()[2].strip()) / name
    assert hashlib.sha256(blob.read_bytes()).digest() == hashlib.sha256(repos[LONGLIVE][name]).digest()


def test_render_with_a_hub_id_from_the_cache_offline(tmp_path, repos):
    hub = Hub(repos)
    home = tmp_path / "hf"
    args = ["render", "--prompt", "a red circle", "--duration", "12f", "--size", "32x32", "--model", LONGLIVE,
            "-o", str(tmp_path / "hub.mp4"), "-q"]  # fmt: skip
    with HubServer(hub) as server:
        cold = cli(server, home, *args, offline=True)
        assert cold.returncode == 1 and not hub.requests
        assert "HF_HUB_OFFLINE is set" in cold.stderr and f"longlive download {LONGLIVE}" in cold.stderr
        assert cli(server, home, "download").returncode == 0
        hub.requests.clear()
        warm = cli(server, home, *args, offline=True)
    assert warm.returncode == 0, warm.stderr
    assert not hub.requests, "offline: the cache alone"
    side = json.loads((tmp_path / "hub.json").read_text())
    assert (
        side["model"]["name"] == "longlive-1.3b"
        and "models--Efficient-Large-Model--LongLive" in side["model"]["source"]
    )


def test_check_names_a_hub_model_without_downloading(tmp_path):
    show = tmp_path / "show.yaml"
    show.write_text(f"version: 1\nmodel: {LONGLIVE}\nduration: 2s\nprompts:\n  - at: 0\n    text: a dog\n")
    hub = Hub({})
    with HubServer(hub) as server:
        result = cli(server, tmp_path / "hf", "check", str(show))
    assert result.returncode == 0, result.stderr
    assert not hub.requests
