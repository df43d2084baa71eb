"""Weights downloads, against an HTTP server on 127.0.0.1: progress, cancel, hash checks, atomic
files, errors that say what to fetch by hand; and no network use unless asked."""
from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from vitviz.core.models import weights as wts
from vitviz.core.models.download import (CHECKPOINT_URLS, DownloadCancelled, DownloadError, download_file,
                                         download_weights, effective_url, expected_hash_prefix)
from vitviz.core.models.loading import load_model
from vitviz.core.models.registry import ModelSpec, Preprocess, register

ORIGIN = "https://weights.example.invalid/vitviz"  # never contacted: the base URL is overridden


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class _Truncating(_Handler):
    """Promises more bytes than it sends, then hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)


def _serve(handler, folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(folder served over HTTP, its base URL); the hub cache and base URL point at test folders."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = _serve(_Handler, folder)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield folder, base
    server.shutdown()
    server.server_close()


def _hashed_checkpoint(folder: Path, stem: str = "tiny") -> tuple[Path, dict]:
    """A tiny ViT checkpoint saved under torch.hub's naming: <stem>-<sha256[:8]>.pth."""
    from tests.helpers import build_tiny_vit

    torch.manual_seed(11)
    state = build_tiny_vit().state_dict()
    tmp = folder / "unnamed.pth"
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp.rename(folder / f"{stem}-{sha[:8]}.pth"), state


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_hash_prefix_and_base_url(monkeypatch):
    assert expected_hash_prefix("vit_b_16-c867db91.pth") == "c867db91"
    assert expected_hash_prefix("detr-r50-dc5-f0fb7ef5.pth") == "f0fb7ef5"
    assert expected_hash_prefix("dino_deitsmall8_pretrain.pth") is None
    assert expected_hash_prefix("mae_pretrain_vit_base.pth") is None
    monkeypatch.delenv("VITVIZ_WEIGHTS_BASE_URL", raising=False)
    url = CHECKPOINT_URLS["detr_resnet50"]
    assert url == "https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth"
    assert effective_url(url) == url
    assert effective_url(url, "http://127.0.0.1:9/m/") == "http://127.0.0.1:9/m/detr-r50-e632da11.pth"
    monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", "http://mirror")
    assert effective_url(url) == "http://mirror/detr-r50-e632da11.pth"


def test_download_with_progress_is_atomic_and_verified(served):
    folder, _ = served
    path, _ = _hashed_checkpoint(folder)
    calls = []
    got = download_file(f"{ORIGIN}/{path.name}", progress=lambda done, total: calls.append((done, total)),
                        chunk_size=4096)
    hub = wts.hub_checkpoint_dir()
    assert got == hub / path.name and got.read_bytes() == path.read_bytes()
    size = path.stat().st_size
    assert calls[0] == (0, size) and calls[-1] == (size, size) and len(calls) > 3
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert _leftovers(hub) == [path.name]  # no temporary file left behind


def test_cancel_leaves_nothing(served):
    folder, _ = served
    path, _ = _hashed_checkpoint(folder)
    stop = threading.Event()
    with pytest.raises(DownloadCancelled, match="cancelled"):
        download_file(f"{ORIGIN}/{path.name}", progress=lambda done, total: done > 8000 and stop.set(),
                      cancel=stop, chunk_size=4096)
    assert _leftovers(wts.hub_checkpoint_dir()) == []
    with pytest.raises(DownloadCancelled):  # a plain callable works too
        download_file(f"{ORIGIN}/{path.name}", cancel=lambda: True)


def test_corrupted_download_is_deleted(served):
    folder, _ = served
    path, _ = _hashed_checkpoint(folder)
    wrong = path.rename(folder / "tiny-0badc0de.pth")  # content no longer matches its name
    with pytest.raises(DownloadError, match="corrupted") as info:
        download_file(f"{ORIGIN}/{wrong.name}")
    hub = wts.hub_checkpoint_dir()
    assert "deleted" in str(info.value) and str(hub / wrong.name) in str(info.value)
    assert _leftovers(hub) == []


def test_no_network_names_file_url_and_folder(served, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VITVIZ_WEIGHTS_BASE_URL", f"http://127.0.0.1:{port}")
    url = CHECKPOINT_URLS["detr_resnet50"]
    with pytest.raises(DownloadError) as info:
        download_file(url, timeout=5)
    msg = str(info.value)
    hub = wts.hub_checkpoint_dir()
    assert "detr-r50-e632da11.pth" in msg and url in msg and str(hub / "detr-r50-e632da11.pth") in msg
    assert _leftovers(hub) == []


def test_http_error_and_cut_off_transfer(served, tmp_path):
    with pytest.raises(DownloadError, match="answered 404"):
        download_file(f"{ORIGIN}/missing-abcdef12.pth")
    server = _serve(_Truncating, tmp_path)
    try:
        with pytest.raises(DownloadError, match="Could not download cut.pth"):
            download_file(f"{ORIGIN}/cut.pth", base_url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert _leftovers(wts.hub_checkpoint_dir()) == []


def test_load_model_downloads_only_when_asked(served, monkeypatch):
    folder, _ = served
    path, state = _hashed_checkpoint(folder, "dl_tiny")
    spec = ModelSpec("test_download_vit", "vit", "Downloadable tiny ViT (tests)", "tests.helpers:build_tiny_vit",
                     Preprocess("center_crop", 64, resize=72), weights=f"{ORIGIN}/{path.name}",
                     classes="none", group="Tests")
    register(spec)
    opened = []
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: opened.append(a) or real_urlopen(*a, **k))

    assert wts.weights_state(spec) == "downloadable"
    offline = load_model(spec, "pretrained")  # download=False: never touches the network
    assert offline.weights == "random" and not offline.trained
    assert any("UNTRAINED" in n and path.name in n for n in offline.notes)
    assert opened == []

    calls = []
    loaded = load_model("test_download_vit", "pretrained", download=lambda d, t: calls.append((d, t)))
    assert loaded.trained and loaded.weights == "pretrained" and loaded.notes == []
    assert calls[-1] == (path.stat().st_size,) * 2 and len(opened) == 1
    torch.testing.assert_close(loaded.module.state_dict()["heads.head.weight"], state["heads.head.weight"])
    assert wts.weights_state(spec) == "cached"
    assert download_weights(spec) == wts.hub_checkpoint_dir() / path.name and len(opened) == 1  # cached


def test_weights_state_stays_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("weights_state touched the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    import vitviz.core.models.known_checkpoints  # noqa: F401 (registers dino_vits8, ...)
    from vitviz.core.models.registry import get_spec

    assert wts.weights_state(get_spec("vit_b_16")) == "downloadable"
    assert wts.weights_state(get_spec("dino_vits8")) == "downloadable"
    assert wts.weights_state(get_spec("test_tiny_vit")) == "random"
    assert wts.weights_url(get_spec("deit_tiny_distilled")).endswith("deit_tiny_distilled_patch16_224-b40b3cf7.pth")
