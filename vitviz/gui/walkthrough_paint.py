"""The attention walk-through as one QPainter routine: the same drawing on screen, in PNG, SVG and PDF.

Six panels for one head and one query (vitviz.core.analysis.steps.AttentionSteps): 1 the query and
its q, 2 the top-k keys and their k, 3 the scores q.k/sqrt(d), 4 softmax, 5 the output and the
residual around the sublayer, 6 the family's extra step (ViT: patch + position embedding; Swin: the
relative position bias and the shifted-window mask; DETR: what the keys are). Logical size
FIGURE_W x FIGURE_H, 1/96 inch; maps are vector rectangles, one per token, over the model's input.
QtGui only (no widgets).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtGui

from ..core.colormaps import map_values
from .export_painter import font, text_width

FIGURE_W, FIGURE_H = 1500, 960
PANEL_W, PANEL_H = 490, 440
TITLE_H = 56
FG, MUTED, BG = QtGui.QColor(25, 25, 25), QtGui.QColor(95, 95, 95), QtGui.QColor(255, 255, 255)
TOPK_COLOR = QtGui.QColor(230, 60, 40)
QUERY_COLOR = QtGui.QColor(20, 200, 255)


@dataclass
class Walkthrough:
    """What the figure draws: the steps, the model input as an image, where tokens sit on it."""

    steps: object  # AttentionSteps
    image: np.ndarray  # (H, W, 3) uint8: the model input, de-normalised
    cell: tuple[float, float]  # (w, h) of a token of steps' grid, model-input pixels
    title: str
    k: int = 5
    cmap: str = "viridis"
    query_box: tuple[float, float, float, float] | None = None  # model-input px (x0, y0, x1, y1); DETR: the box
    input_mean: tuple = (0.485, 0.456, 0.406)  # to show the patch's normalised pixels as colours
    input_std: tuple = (0.229, 0.224, 0.225)

    def top_keys(self) -> np.ndarray:
        return self.steps.top_k(self.k)

    def key_name(self, j: int) -> str:
        s = self.steps
        if s.valid[j]:
            return f"({s.positions[j][0]}, {s.positions[j][1]})"
        return s.key_labels[j] if j < len(s.key_labels) else f"padding {tuple(s.positions[j])}"


def fmt(x: float) -> str:
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def diverging(values: np.ndarray, scale: float) -> list[QtGui.QColor]:
    """Blue (negative) - white - red (positive), symmetric around 0 at +-scale."""
    t = np.clip(np.asarray(values, np.float64) / (scale or 1.0), -1, 1)
    out = []
    for v in t:
        a = abs(v)
        c = (1 - a) * np.array([255, 255, 255]) + a * (np.array([200, 40, 40]) if v > 0 else np.array([40, 80, 200]))
        out.append(QtGui.QColor(*[int(x) for x in c]))
    return out


class Painter:
    def __init__(self, p: QtGui.QPainter, w: Walkthrough):
        self.p, self.w, self.s = p, w, w.steps
        h, wd = w.image.shape[:2]
        self.qimage = QtGui.QImage(np.ascontiguousarray(w.image).data, wd, h, 3 * wd,
                                   QtGui.QImage.Format.Format_RGB888).copy()

    # -- primitives ----------------------------------------------------------------------------
    def text(self, x, y, s, size=13, bold=False, color=FG, width=None):
        self.p.setFont(font(size, bold))
        self.p.setPen(color)
        if width is None:
            self.p.drawText(QtCore.QPointF(x, y + size), s)
        else:
            self.p.drawText(QtCore.QRectF(x, y, width, 400), int(QtCore.Qt.TextFlag.TextWordWrap), s)

    def strip(self, x, y, width, values, label, h=16, scale=None):
        """A labelled strip: one cell per component, blue-white-red by sign."""
        values = np.asarray(values, np.float64)
        scale = float(np.abs(values).max()) if scale is None else scale
        self.text(x, y, label, 11, color=MUTED)
        y += 15
        cw = width / max(1, len(values))
        self.p.setPen(QtCore.Qt.PenStyle.NoPen)
        for i, c in enumerate(diverging(values, scale)):
            self.p.setBrush(c)
            self.p.drawRect(QtCore.QRectF(x + i * cw, y, cw + 0.3, h))
        self.p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        self.p.setPen(QtGui.QPen(MUTED, 0.6))
        self.p.drawRect(QtCore.QRectF(x, y, width, h))
        return y + h + 4

    def image_rect(self, x, y, width, height) -> tuple[QtCore.QRectF, float]:
        ih, iw = self.w.image.shape[:2]
        f = min(width / iw, height / ih)
        return QtCore.QRectF(x + (width - iw * f) / 2, y, iw * f, ih * f), f

    def token_rect(self, r: QtCore.QRectF, f: float, row: int, col: int) -> QtCore.QRectF:
        cw, ch = self.w.cell
        ih, iw = self.w.image.shape[:2]
        x0, y0 = col * cw, row * ch
        x1, y1 = min(iw, x0 + cw), min(ih, y0 + ch)
        return QtCore.QRectF(r.x() + x0 * f, r.y() + y0 * f, max(0.0, x1 - x0) * f, max(0.0, y1 - y0) * f)

    def picture(self, x, y, width, height, values=None, dim=True, signed=False):
        """The model input with an optional per-key map (N,) drawn as token rectangles."""
        r, f = self.image_rect(x, y, width, height)
        self.p.drawImage(r, self.qimage)
        if values is None:
            return r, f, None
        s = self.s
        v = np.asarray(values, np.float64)
        shown = s.valid & np.isfinite(v)
        if dim:  # keys this head does not see (outside a Swin window): greyed
            self.p.fillRect(r, QtGui.QColor(255, 255, 255, 150))
        if not shown.any():
            return r, f, None
        lo, hi = float(v[shown].min()), float(v[shown].max())
        if signed:
            m = max(abs(lo), abs(hi))
            colors = dict(zip(np.flatnonzero(shown), diverging(v[shown], m)))
        else:
            rgba = map_values(self.w.cmap, v[shown], lo, hi if hi > lo else lo + 1e-12)
            colors = {j: QtGui.QColor(*[int(c) for c in rgba[i][:3]]) for i, j in enumerate(np.flatnonzero(shown))}
        self.p.setPen(QtCore.Qt.PenStyle.NoPen)
        self.p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)  # no seams between tokens
        for j, c in colors.items():
            c.setAlpha(215)
            self.p.setBrush(c)
            self.p.drawRect(self.token_rect(r, f, *s.positions[j]))
        self.p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        self.p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        return r, f, (lo, hi)

    def outline(self, r, f, row, col, color, label=None, width=2.0):
        t = self.token_rect(r, f, row, col)
        self.p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        self.p.setPen(QtGui.QPen(color, width))
        self.p.drawRect(t)
        if label:  # sized to the token, so labels of small neighbouring tokens do not cover each other
            size = float(np.clip(0.75 * min(t.width(), t.height()), 6.5, 10))
            self.p.setFont(font(size, True))
            self.p.fillRect(QtCore.QRectF(t.x(), t.y(), 0.7 * size * len(label) + 3, 1.3 * size), color)
            self.p.setPen(QtGui.QColor(255, 255, 255))
            self.p.drawText(QtCore.QPointF(t.x() + 1.5, t.y() + 1.05 * size), label)

    def mark_query(self, r, f):
        s = self.s
        if s.query_position is not None:
            self.outline(r, f, *s.query_position, QUERY_COLOR, None, 2.5)
        elif self.w.query_box is not None:
            x0, y0, x1, y1 = self.w.query_box
            self.p.setPen(QtGui.QPen(QUERY_COLOR, 2.5))
            self.p.drawRect(QtCore.QRectF(r.x() + x0 * f, r.y() + y0 * f, (x1 - x0) * f, (y1 - y0) * f))

    def mark_top(self, r, f):
        for n, j in enumerate(self.w.top_keys(), 1):
            self.outline(r, f, *self.s.positions[j], TOPK_COLOR, str(n))

    def levels(self, x, y, lv, what):
        if lv is not None:
            self.text(x, y, f"{what}: {fmt(lv[0])} … {fmt(lv[1])}", 11, color=MUTED)

    # -- panels --------------------------------------------------------------------------------
    def panel(self, i: int, title: str):
        col, row = i % 3, i // 3
        x, y = 10 + col * (PANEL_W + 10), TITLE_H + row * (PANEL_H + 12)
        self.p.setPen(QtGui.QPen(QtGui.QColor(200, 200, 200), 1))
        self.p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        self.p.drawRoundedRect(QtCore.QRectF(x, y, PANEL_W, PANEL_H), 6, 6)
        self.text(x + 12, y + 8, title, 15, True)
        return x + 12, y + 34, PANEL_W - 24

    def p1_query(self):
        s = self.s
        x, y, w = self.panel(0, "1  The query token and its q")
        r, f, _ = self.picture(x, y, w, 220)
        self.mark_query(r, f)
        y = r.bottom() + 10
        grid_word = "patch" if s.family == "vit" else "token"
        who = f"{grid_word} {s.query_position}" if s.query_position is not None else (
            "the class token" if s.family == "vit" else f"object query {s.query}")
        self.text(x, y, f"Query: {who}   ·   {s.where}", 13)
        y += 24
        y = self.strip(x, y, w, s.q, f"q = W_q x + b_q   (d = {s.d} values, ‖q‖ = {fmt(np.linalg.norm(s.q))})")
        self.text(x, y + 6, "Each token's normalised input x gives a query, a key and a value: three learned "
                  "projections of the same vector.", 11, color=MUTED, width=w)

    def p2_keys(self):
        s, top = self.s, self.w.top_keys()
        x, y, w = self.panel(1, f"2  The keys: top {len(top)} by weight")
        r, f, _ = self.picture(x, y, w, 170)
        self.mark_query(r, f)
        self.mark_top(r, f)
        y = r.bottom() + 8
        scale = float(np.abs(s.k[top]).max()) if len(top) else 1.0
        for n, j in enumerate(top, 1):
            y = self.strip(x, y, w, s.k[j], f"#{n} k{self.w.key_name(j)}   w = {fmt(s.weights[j])}", h=10, scale=scale)
        rest = np.setdiff1d(np.arange(len(s.weights)), top)
        if len(rest):
            self.text(x, y + 2, f"The other {len(rest)} keys: mean ‖k‖ = {fmt(np.linalg.norm(s.k[rest], axis=1).mean())}"
                      f" (top {len(top)}: {fmt(np.linalg.norm(s.k[top], axis=1).mean())})", 11, color=MUTED)

    def p3_scores(self):
        s, top = self.s, self.w.top_keys()
        x, y, w = self.panel(2, "3  Scores  q·k / √d")
        scale = "cos(q, k) × " + fmt(s.scale) if "cosine" in " ".join(s.notes) else f"1/√{s.d} = {fmt(s.scale)}"
        r, f, lv = self.picture(x, y, w, 220, s.logits, signed=True)
        self.mark_top(r, f)
        y = r.bottom() + 6
        self.levels(x, y, lv, "score range (blue < 0 < red)")
        y += 20
        self.text(x, y, f"scale: {scale}", 12)
        y += 22
        for n, j in enumerate(top, 1):
            extra = "" if not (s.bias.any() or s.mask.any()) else \
                f"  + bias {fmt(s.bias[j])} + mask {fmt(s.mask[j])} = {fmt(s.scores[j])}"
            self.text(x, y, f"#{n} {self.w.key_name(j)}: {fmt(s.logits[j])}{extra}", 12)
            y += 18

    def p4_softmax(self):
        s, top = self.s, self.w.top_keys()
        x, y, w = self.panel(3, "4  Softmax: the weights")
        r, f, lv = self.picture(x, y, w, 220, s.weights)
        self.mark_query(r, f)
        self.mark_top(r, f)
        y = r.bottom() + 6
        self.levels(x, y, lv, "weight range")
        y += 20
        i, wmin = s.smallest_weight()
        lines = [f"w_j = exp(s_j) / Σ exp(s_i)   over N = {len(s.weights)} keys  (Σ w = {fmt(s.weights.sum())})",
                 f"top {len(top)} keys hold {fmt(s.weights[top].sum())}",
                 f"sum outside the top {len(top)}: {fmt(s.weight_outside(len(top)))}",
                 f"smallest weight: {fmt(wmin)} at key {self.w.key_name(i)}"
                 + ("  (exactly 0: a -∞ mask)" if wmin == 0 else "  (never exactly 0)")]
        prefix = [j for j in range(len(s.weights)) if not s.valid[j] and j < len(s.key_labels)]
        if prefix:
            lines.append("non-image keys: " + ", ".join(f"{s.key_labels[j]} {fmt(s.weights[j])}" for j in prefix))
        for line in lines:
            self.text(x, y, line, 12)
            y += 19

    def p5_output(self):
        s, top = self.s, self.w.top_keys()
        x, y, w = self.panel(4, "5  Output: weights × values, then the block")
        o, part = s.output, s.output_from(top)
        y = self.strip(x, y, w, o, f"o = Σ w_j v_j   (d = {s.d}, ‖o‖ = {fmt(np.linalg.norm(o))})")
        share = float(part @ o / (o @ o)) if o @ o > 0 else 0.0
        y = self.strip(x, y + 4, w, part, f"from the top {len(top)} keys: ‖Σ_top w v‖ = {fmt(np.linalg.norm(part))},"
                       f" {100 * share:.0f}% of o along o", scale=float(np.abs(o).max()))
        n = s.norms()
        bars = [("this head through W_o", n["head_projection"]), ("attention sublayer (all heads)", n["attention_output"]),
                ("residual stream before", n["residual_in"]), ("residual stream after", n["residual_out"])]
        y += 12
        self.text(x, y, "The head is one step inside the block (norms):", 12, True)
        y += 22
        top_n = max(v for _, v in bars) or 1.0
        for label, v in bars:
            self.text(x, y, label, 11)
            bw = (w - 210) * v / top_n
            self.p.fillRect(QtCore.QRectF(x + 200, y + 2, bw, 12), QtGui.QColor(90, 130, 200))
            self.text(x + 205 + bw, y, fmt(v), 11, color=MUTED)
            y += 20
        after = {"vit": "after = before + sublayer (pre-norm block)", "swin": "after = before + sublayer "
                 "(v1; v2 norms the sublayer first)", "detr": "after = LayerNorm(before + sublayer) (post-norm)"}
        self.text(x, y + 4, after.get(s.family, ""), 11, color=MUTED)

    def p6_extra(self):
        s = self.s
        if s.family == "vit":
            return self.p6_embedding()
        if s.family == "swin":
            x, y, w = self.panel(5, "6  Swin: + relative position bias + mask")
            hw = (w - 10) / 2
            for n, (vals, name) in enumerate([(s.logits, "q·k scaled"), (s.bias, "+ bias"), (s.mask, "+ mask"),
                                              (s.scores, "= scores into softmax")]):
                cx, cy = x + (n % 2) * (hw + 10), y + (n // 2) * 195
                self.text(cx, cy, name, 12, True)
                r, f, lv = self.picture(cx, cy + 18, hw, 150, vals, signed=True)
                if vals is s.mask and not s.mask.any():
                    self.text(cx, cy + 18 + r.height() + 2, "0 everywhere: no pair of this window is masked", 11,
                              color=MUTED)
                else:
                    self.levels(cx, cy + 18 + r.height() + 2, lv, "range")
            return None
        x, y, w = self.panel(5, "6  DETR: what the object query attends to")
        r, f, _ = self.picture(x, y, w, 220, np.where(s.valid, 1.0, np.nan), dim=False)
        self.mark_query(r, f)
        self.text(x, r.bottom() + 10, "Keys = encoder memory + sine position embedding; values = encoder memory; "
                  f"{int((~s.valid).sum())} padding cells are masked with -∞ (weight exactly 0). The query is the "
                  "object query's decoder state plus its learned embedding.", 12, width=w)
        return None

    def p6_embedding(self):
        s, e = self.s, self.s.embedding
        x, y, w = self.panel(5, "6  Patch + position embedding")
        if e is None:
            self.text(x, y, "The class token is a learned vector (plus its position embedding), not made of pixels.",
                      12, width=w)
            return
        px = e.pixels * np.asarray(self.w.input_std) + np.asarray(self.w.input_mean)
        px = (np.clip(px, 0, 1) * 255 + 0.5).astype(np.uint8)
        h, wd = px.shape[:2]
        img = QtGui.QImage(np.ascontiguousarray(px).data, wd, h, 3 * wd, QtGui.QImage.Format.Format_RGB888).copy()
        self.p.drawImage(QtCore.QRectF(x, y, 110, 110), img)
        nm = e.norms()
        self.text(x + 122, y, f"{h} × {wd} × 3 pixels (‖·‖ = {fmt(nm['pixels'])}, normalised)", 12)
        kind = "one linear map of the patch (conv, kernel = stride)" if e.linear else "a convolutional stem"
        self.text(x + 122, y + 22, f"→ embedding by {kind}", 12, width=w - 122)
        y += 122
        scale = float(max(np.abs(e.embedding).max(), np.abs(e.position).max(), np.abs(e.token).max()))
        y = self.strip(x, y, w, e.embedding, f"linear embedding   ‖·‖ = {fmt(nm['embedding'])}", scale=scale)
        y = self.strip(x, y + 2, w, e.position, f"+ position embedding   ‖·‖ = {fmt(nm['position'])}", scale=scale)
        y = self.strip(x, y + 2, w, e.token, f"= token entering layer 0   ‖·‖ = {fmt(nm['token'])}", scale=scale)
        self.text(x, y + 6, f"D = {len(e.token)}; the token then passes the layers before this one.", 11, color=MUTED)

    def draw(self):
        self.p.fillRect(QtCore.QRectF(0, 0, FIGURE_W, FIGURE_H), BG)
        self.text(14, 10, self.w.title, 20, True)
        self.text(14, 36, "Every number from the model's own weights applied to its input; the weights equal the "
                  "attention the view shows.  Cyan: the query; red, numbered: the top keys.", 11, color=MUTED)
        for step in (self.p1_query, self.p2_keys, self.p3_scores, self.p4_softmax, self.p5_output, self.p6_extra):
            step()


def paint(painter: QtGui.QPainter, walkthrough: Walkthrough, width: float, height: float) -> None:
    """Draw the figure scaled to fit (width, height), centred."""
    f = min(width / FIGURE_W, height / FIGURE_H)
    painter.save()
    painter.translate((width - FIGURE_W * f) / 2, (height - FIGURE_H * f) / 2)
    painter.scale(f, f)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    Painter(painter, walkthrough).draw()
    painter.restore()


def export(walkthrough: Walkthrough, path: str) -> None:
    """Write the figure to .svg or .pdf (vector) or .png (2x)."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext == "svg":
        from PySide6.QtSvg import QSvgGenerator

        dev = QSvgGenerator()
        dev.setFileName(path)
        dev.setSize(QtCore.QSize(FIGURE_W, FIGURE_H))
        dev.setViewBox(QtCore.QRect(0, 0, FIGURE_W, FIGURE_H))
        dev.setTitle(walkthrough.title)
        size = (FIGURE_W, FIGURE_H)
    elif ext == "pdf":
        dev = QtGui.QPdfWriter(path)
        dev.setResolution(96)
        dev.setPageSize(QtGui.QPageSize(QtCore.QSizeF(FIGURE_W, FIGURE_H), QtGui.QPageSize.Unit.Point))
        dev.setPageMargins(QtCore.QMarginsF(0, 0, 0, 0))
        dev.setTitle(walkthrough.title)
        size = (dev.width(), dev.height())
    elif ext == "png":
        dev = QtGui.QImage(2 * FIGURE_W, 2 * FIGURE_H, QtGui.QImage.Format.Format_RGB32)
        dev.fill(QtGui.QColor(255, 255, 255))
        size = (2 * FIGURE_W, 2 * FIGURE_H)
    else:
        raise ValueError(f"export as .svg, .pdf or .png, not {path!r}")
    p = QtGui.QPainter(dev)
    try:
        paint(p, walkthrough, *size)
    finally:
        p.end()
    if ext == "png" and not dev.save(path):
        raise OSError(f"could not write {path}")
