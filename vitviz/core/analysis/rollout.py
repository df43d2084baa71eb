"""Attention rollout (Abnar & Zuidema 2020): R = A'_{L-1} ... A'_0 with A'_l = rownorm(0.5 W_l + 0.5 I),
W_l the layer's head-fused attention with its lowest `discard_ratio` entries set to 0 (never [0, 0]).

RolloutEngine keeps what every setting change needs, so none of them recomputes from the attention:
per head fusion the fused layers (float32) and their stable ascending order (the discard threshold for
any ratio is then a lookup), per discard ratio the discarded layers and their row sums, and per query
the rollout row, computed as a chain of L vector-matrix products (the full N x N matrix only when asked).
Torch is imported lazily; the work is in torch because numpy's float16 casts and reductions are slow.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from .heads import FUSIONS

# Fused weights below this are set to 0: a chain of products of tiny float32 weights goes denormal and
# ran 80x slower (ARCHITECTURE.md); 2**-60 ~ 9e-19 changes no rollout value by more than ~1e-16.
TINY = 2.0 ** -60
_STACKS_KEPT = 3  # discarded layer stacks kept (L x N x N float32 each): the current and recent ratios
_ROWS_KEPT = 256  # rollout rows kept (hover reads the current one many times)


@contextmanager
def single_thread():
    """Torch on one thread for the calling thread (OpenMP's thread count is per thread). These are
    ~1 ms operations: with two threads on a busy 2-core machine they spiked to 10-90 ms (a thread
    waiting for a descheduled peer), measured by vitviz bench."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _check(head_fusion: str, discard_ratio: float) -> None:
    if head_fusion not in FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(FUSIONS)}, not {head_fusion!r}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {discard_ratio}")


def discard_count(num_tokens: int, discard_ratio: float) -> int:
    """Entries discarded per layer: int(N * N * ratio), as the usual rollout scripts count them."""
    return int(num_tokens * num_tokens * float(discard_ratio))


class RolloutEngine:
    """Rollout of one attention record (L, H, N, N), any fusion, discard ratio and query.

    Thread-safe: `prepare_in_background()` fills the per-fusion caches in a daemon thread while the
    caller keeps asking for rows; a request for something being prepared waits for it."""

    def __init__(self, attn: np.ndarray):
        if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
            raise ValueError(f"attention must be (layers, heads, N, N), not {attn.shape}")
        self.attn = attn
        self.num_layers, self.num_heads, self.num_tokens = attn.shape[0], attn.shape[1], attn.shape[-1]
        self._guard = threading.Lock()
        self._locks: dict = {}
        self._done: dict = {}  # ("fused", f) / ("order", f) -> tensor, computed once
        self._stacks: OrderedDict = OrderedDict()  # (f, k) -> (discarded W (L, N, N), D (L, N))
        self._rows: OrderedDict = OrderedDict()  # (f, k, query) -> (N,) float64
        self._matrices: dict = {}  # (f, k) -> (N, N) float64
        self._thread: threading.Thread | None = None
        self._stop = False

    # -- public --------------------------------------------------------------------------------
    def row(self, query: int, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
        """Row `query` of the rollout matrix, (N,) float64: how much each input token flows into
        token `query` at the output. L vector-matrix products, no N x N product."""
        _check(head_fusion, discard_ratio)
        q = int(query)
        if not 0 <= q < self.num_tokens:
            raise IndexError(f"query token {q} out of range (N = {self.num_tokens})")
        k = discard_count(self.num_tokens, discard_ratio)
        key = (head_fusion, k, q)
        with self._guard:
            hit = self._rows.get(key)
            if hit is not None:
                self._rows.move_to_end(key)
                return hit
            m = self._matrices.get((head_fusion, k))
        if m is not None:
            out = m[q]
        else:
            with single_thread():
                out = self._row(q, *self._stack(head_fusion, k))
        with self._guard:
            self._rows[key] = out
            while len(self._rows) > _ROWS_KEPT:
                self._rows.popitem(last=False)
        return out

    def matrix(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
        """The full (N, N) rollout, float64 (computed in float32), cached. Row i is token i's."""
        _check(head_fusion, discard_ratio)
        k = discard_count(self.num_tokens, discard_ratio)
        with self._guard:
            m = self._matrices.get((head_fusion, k))
        if m is None:
            with single_thread():
                m = self._matrix(*self._stack(head_fusion, k))
            with self._guard:
                self._matrices[(head_fusion, k)] = m
        return m

    def prepare(self, fusions=FUSIONS, order: bool = True) -> None:
        """Fuse the heads for every fusion in `fusions` (and sort, for discard ratios > 0), now."""
        for f in fusions:
            if self._stop:
                return
            self._fused(f)
            if order and not self._stop:
                self._order(f)

    def prepare_in_background(self, fusions=FUSIONS, first: str | None = None) -> threading.Thread:
        """prepare() in a daemon thread (once per engine; `first` fusion first). Returns the thread."""
        with self._guard:
            if self._thread is None:
                todo = ([first] if first in fusions else []) + [f for f in fusions if f != first]
                self._thread = threading.Thread(target=self._prepare_quietly, args=(todo,), daemon=True,
                                                name="vitviz-rollout-prepare")
                self._thread.start()
            return self._thread

    def _prepare_quietly(self, fusions) -> None:
        with single_thread():  # leaves the other core to the GUI
            self.prepare(fusions)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for prepare_in_background(); True when nothing is left running."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def cancel(self) -> None:
        """Stop background preparation after its current step (the analysis is no longer shown)."""
        self._stop = True

    def prepared(self, head_fusion: str, discard_ratio: float = 0.0) -> bool:
        """Whether a setting change to (head_fusion, discard_ratio) needs no per-fusion work."""
        with self._guard:
            return ("fused", head_fusion) in self._done and (
                discard_count(self.num_tokens, discard_ratio) == 0 or ("order", head_fusion) in self._done)

    # -- per fusion: computed once ---------------------------------------------------------------
    def _once(self, key, compute):
        with self._guard:
            if key in self._done:
                return self._done[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._done:
                    return self._done[key]
            value = compute()
            with self._guard:
                self._done[key] = value
            return value

    def _fused(self, fusion: str):
        """(L, N, N) float32 torch, heads fused layer by layer (one float32 copy of a layer at a time),
        weights below TINY set to 0."""
        import torch

        def compute():
            with warnings.catch_warnings():  # a read-only array is fine: it is never written
                warnings.simplefilter("ignore", UserWarning)
                src = torch.from_numpy(np.ascontiguousarray(self.attn))
            L, N = self.num_layers, self.num_tokens
            out = torch.empty((L, N, N), dtype=torch.float32)
            for layer in range(L):
                a = src[layer]  # (H, N, N), float16 or float32
                if fusion == "mean":  # accumulate in float32 without a float32 copy of the heads
                    torch.mean(a, dim=0, dtype=torch.float32, out=out[layer])
                else:  # max / min are exact in the source dtype
                    out[layer].copy_(a.amax(0) if fusion == "max" else a.amin(0))
            out.masked_fill_(out < TINY, 0.0)
            return out

        return self._once(("fused", fusion), compute)

    def _order(self, fusion: str):
        """(L, N*N) int32: each layer's flat indices in stable ascending order of weight (ties by
        index, as the reference): the k discarded entries of any ratio are the first k."""
        import torch

        def compute():
            w = self._fused(fusion).view(self.num_layers, -1)
            return torch.sort(w, dim=1, stable=True).indices.to(torch.int32)

        return self._once(("order", fusion), compute)

    # -- per discard ratio -----------------------------------------------------------------------
    def _stack(self, fusion: str, k: int):
        """(W, D): W the list of fused layers with their k lowest entries zeroed ([0, 0] kept), D = the row
        sums of 0.5 W + 0.5 I, so A'_l = diag(1 / D_l) (0.5 W_l + 0.5 I)."""
        key = (fusion, k)
        with self._guard:
            hit = self._stacks.get(key)
            if hit is not None:
                self._stacks.move_to_end(key)
                return hit
        import torch

        fused = self._fused(fusion)
        w = self._discard(fused, self._order(fusion), k) if k > 0 else list(fused.unbind(0))
        d = torch.stack([layer.sum(-1) for layer in w]).mul_(0.5).add_(0.5)
        with self._guard:
            self._stacks[key] = (w, d)
            while len(self._stacks) > _STACKS_KEPT:
                self._stacks.popitem(last=False)
        return w, d

    def _discard(self, w, order, k: int) -> list:
        """The layers of w (L, N, N) with, per layer, the entries of rank < k (stable ascending) set to 0, except [0, 0]:
        everything <= the k-th smallest value goes by threshold, then the entries tied with it
        that rank >= k are put back."""
        import torch.nn.functional as F

        L, NN = order.shape
        flat = w.view(L, NN)
        t = flat.gather(1, order[:, k - 1: k].long())  # (L, 1): the largest discarded value
        # F.threshold keeps x > t and was ~8x faster here than torch.where with a broadcast t
        out = [F.threshold(w[layer], float(t[layer]), 0.0) for layer in range(L)]
        width = 64
        while k < NN:  # ties with t that rank >= k stay: they follow position k in the order
            cand = order[:, k: k + width].long()
            tied = flat.gather(1, cand) == t
            for layer in tied.any(1).nonzero().flatten().tolist():
                c = cand[layer][tied[layer]]
                out[layer].view(-1)[c] = flat[layer, c]
            if not bool(tied[:, -1].any()) or k + width >= NN:
                break
            width *= 4  # a long run of ties: look further (rare: a layer of equal weights)
        for layer in range(L):  # the class token's attention to itself is never discarded
            out[layer][0, 0] = w[layer, 0, 0]
        return out

    # -- products --------------------------------------------------------------------------------
    @staticmethod
    def _row(q: int, w, d) -> np.ndarray:
        import torch

        L, N = len(w), w[0].shape[0]
        v = torch.zeros(N, dtype=torch.float32)
        v[q] = 1.0
        for layer in range(L - 1, -1, -1):  # e_q^T A'_{L-1} ... A'_0, left to right
            u = v / d[layer]
            v = torch.mv(w[layer].T, u).add_(u).mul_(0.5)
            v.masked_fill_(v < TINY, 0.0)  # keep the chain out of denormals
        return v.double().numpy()

    @staticmethod
    def _matrix(w, d) -> np.ndarray:
        import torch

        L = len(w)
        out = None
        for layer in range(L):  # later layers act on the result of earlier ones
            a = w[layer].mul(0.5)
            a.diagonal().add_(0.5)
            a.div_(d[layer][:, None])
            out = a if out is None else torch.mm(a, out)
            out.masked_fill_(out < TINY, 0.0)
        return out.double().numpy()


def rollout_matrix(attn: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0,
                   start_layer: int = 0, end_layer: int | None = None) -> np.ndarray:
    """Rollout over layers [start_layer, end_layer) of attn (L, H, N, N) -> (N, N) float64.

    Row i is how much input token j flows into token i at the output: per layer the heads are fused,
    the residual is added as the identity, A = 0.5 * (W + I), and each ROW is renormalised to sum to 1
    (rows are queries; some well-known scripts divide by the wrong axis here)."""
    _check(head_fusion, discard_ratio)
    return RolloutEngine(attn[start_layer:end_layer]).matrix(head_fusion, discard_ratio)


def rollout_reference(attn: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Straightforward per-layer, per-row loop in float64: the independent check used by tests and
    the benchmark."""
    L, H, N, _ = attn.shape
    result = np.eye(N)
    for layer in range(L):
        result = _reference_layer(attn[layer], head_fusion, discard_ratio, N) @ result
    return result


def _reference_layer(per_head: np.ndarray, head_fusion: str, discard_ratio: float, N: int) -> np.ndarray:
    """One layer of the reference: fuse heads, discard, add the residual and renormalise row by row."""
    per_head = per_head.astype(np.float64)
    fused = {"mean": per_head.mean(0), "max": per_head.max(0), "min": per_head.min(0)}[head_fusion]
    if discard_ratio > 0:
        flat = fused.flatten()
        k = int(flat.size * discard_ratio)
        if k:
            order = np.argsort(flat, kind="stable")[:k]
            order = order[order != 0]
            flat[order] = 0
        fused = flat.reshape(N, N)
    a = np.empty((N, N))
    for i in range(N):
        row = 0.5 * fused[i]
        row[i] += 0.5
        a[i] = row / row.sum()
    return a
