"""The toolbar's model, weights and device pickers.

Models are listed by family group, each with the state of its pretrained weights (cached,
downloadable, bundled, random only); recent models and checkpoints are remembered in QSettings.
The Hugging Face hub-cache models vitviz opens (transformers ViT / DeiT / DINO(v2) / Swin / DETR, and
CLIP image towers) follow in their own groups, with their family and size on disk.
Weights states and GPU availability need torch: they are read in a background thread when torch is
not loaded yet (the window comes up first), at once when it is.
"""
from __future__ import annotations

import json
import os
import sys
import threading

from PySide6 import QtCore, QtGui, QtWidgets

from ..core.models.registry import ModelSpec, all_specs, get_spec

OPEN_CHECKPOINT = "__open_checkpoint__"  # item data of the "Open checkpoint…" entries
RECENT_MAX = 5
DEVICES = ("auto", "cpu", "cuda", "mps")
# state -> (suffix shown after the model's name, colour of its dot, tooltip)
STATES = {
    "cached": ("cached", "#2e7d32", "Pretrained weights are on this computer (torch hub cache)."),
    "bundled": ("bundled", "#00838f", "Trained weights ship with vitviz: works offline."),
    "downloadable": ("download", "#1565c0", "Pretrained weights are published but not downloaded yet: "
                                            "choosing them offers to download."),
    "random": ("random only", "#9e9e9e", "No published weights: runs with random (untrained) weights, "
                                         "or open a checkpoint file."),
}
_KIND, _LABEL = QtCore.Qt.ItemDataRole.UserRole + 1, QtCore.Qt.ItemDataRole.UserRole + 2


def hidden_group(group: str) -> bool:
    return group.startswith("Test")


def spec_state(spec: ModelSpec) -> str:
    """cached / downloadable / random from core.models.weights, or bundled (the demo models)."""
    if spec.bundled:
        return "bundled"
    from ..core.models.weights import weights_state

    return weights_state(spec)


def weights_size_mb(spec: ModelSpec) -> float | None:
    """The download's size in MB when torchvision's weights metadata says (it does for its own)."""
    from ..core.models.weights import weights_enum

    try:
        w = weights_enum(spec)
    except (AttributeError, ValueError):
        return None
    size = w.meta.get("_file_size") if w is not None else None
    return float(size) if size else None


def format_mb(mb: float | None) -> str:
    if mb is None:
        return ""
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def scan_states(specs: list[ModelSpec]) -> dict[str, tuple[str, float | None]]:
    """name -> (state, download size in MB or None). Offline: looks at files only."""
    out = {}
    for spec in specs:
        try:
            state = spec_state(spec)
            out[spec.name] = (state, weights_size_mb(spec) if state == "downloadable" else None)
        except Exception:  # a broken spec must not break the list
            out[spec.name] = ("random", None)
    return out


FAMILY_SHORT = {"vit": "ViT", "swin": "Swin", "detr": "DETR"}


def scan_hub() -> list[tuple[ModelSpec, str, float]]:
    """(spec, state, size in MB) of every hub-cache model vitviz opens: cached, or random when the
    snapshot has a config but no weights. Offline, file reads only (no torch)."""
    from ..core.models import clip_specs, hf_specs

    try:
        found = hf_specs.cached_specs() + clip_specs.cached_specs()
    except Exception:  # a cache vitviz cannot read must not break the list
        return []
    out = [(spec, "cached" if entry.has_weights else "random", entry.size_bytes / 1e6) for spec, entry in found]
    return sorted(out, key=lambda t: (t[0].group, t[0].name))


def hub_label(spec: ModelSpec) -> str:
    """'google/vit-base-patch16-224 (ViT)'; a CLIP tower's label already says what it is."""
    return spec.label if spec.source == "clip" else f"{spec.label} ({FAMILY_SHORT.get(spec.family, spec.family)})"


def scan_devices() -> dict[str, str | None]:
    """device -> None when usable, else why not (shown as the combo entry's tooltip)."""
    import torch

    reasons: dict[str, str | None] = {"auto": None, "cpu": None}
    if torch.cuda.is_available():
        reasons["cuda"] = None
    elif torch.version.cuda is None:
        reasons["cuda"] = f"This PyTorch build ({torch.__version__}) has no CUDA support."
    else:
        reasons["cuda"] = (f"No CUDA GPU found (PyTorch {torch.__version__} is built for CUDA "
                           f"{torch.version.cuda}; check the NVIDIA driver).")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        reasons["mps"] = None
    elif sys.platform != "darwin":
        reasons["mps"] = "MPS is Apple's GPU backend: only on macOS with Apple silicon."
    else:
        reasons["mps"] = "No Apple GPU (MPS) available to this PyTorch build."
    return reasons


def _torch_loaded() -> bool:
    return "torchvision" in sys.modules and "torch" in sys.modules


def _dot(color: str, hollow: bool = False) -> QtGui.QIcon:
    pm = QtGui.QPixmap(12, 12)
    pm.fill(QtCore.Qt.GlobalColor.transparent)
    p = QtGui.QPainter(pm)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    p.setPen(QtGui.QPen(QtGui.QColor(color), 1.5))
    p.setBrush(QtCore.Qt.BrushStyle.NoBrush if hollow else QtGui.QColor(color))
    p.drawEllipse(QtCore.QRectF(2, 2, 8, 8))
    p.end()
    return QtGui.QIcon(pm)


class PopupCombo(QtWidgets.QComboBox):
    """A combo box that says when its list is about to open (to refresh what it shows)."""

    popupAboutToShow = QtCore.Signal()

    def showPopup(self) -> None:  # noqa: N802 (Qt name)
        self.popupAboutToShow.emit()
        # the list is as wide as its longest entry (bold headers too), even when the box is narrower
        widest = 0
        for i in range(self.count()):
            font = self.itemData(i, QtCore.Qt.ItemDataRole.FontRole) or self.font()
            widest = max(widest, QtGui.QFontMetrics(font).horizontalAdvance(self.itemText(i)))
        self.view().setMinimumWidth(max(self.width(), widest + self.iconSize().width() + 40))
        super().showPopup()


class ModelPicker(QtWidgets.QWidget):
    """Model, weights and device combos. The window owns the current choice: the picker emits what
    the user picked (modelChosen, deviceChosen, openCheckpointRequested) and shows what the window
    tells it (set_current)."""

    modelChosen = QtCore.Signal(str, str)  # (model, weights) the user picked
    deviceChosen = QtCore.Signal(str)
    openCheckpointRequested = QtCore.Signal()
    statesChanged = QtCore.Signal()  # weights states or device availability were (re)read
    notice = QtCore.Signal(str)  # something to say in the status bar
    _scanned = QtCore.Signal(object)  # from the scan thread: (states, devices) or an exception

    def __init__(self, settings: QtCore.QSettings, model: str, weights: str, device: str, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.model, self.weights, self.device = model, weights, device
        self._states: dict[str, tuple[str, float | None]] = {
            s.name: ("bundled", None) for s in all_specs() if s.bundled}  # known without torch
        self._transient: dict[str, str] = {}  # name -> text shown instead of the state ("downloading 40%")
        self._devices: dict[str, str | None] | None = None
        self._hub: list[ModelSpec] = []  # the hub-cache models found by the last scan
        self._scanning = False
        self.last_notice = ""
        self._scanned.connect(self._on_scanned)

        fit = QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        self.model_combo = PopupCombo()
        self.model_combo.setObjectName("model-combo")
        self.model_combo.setSizeAdjustPolicy(fit)
        self.model_combo.setMinimumContentsLength(24)
        self.model_combo.setToolTip("Model (the dot and suffix say where its weights are)")
        self.weights_combo = PopupCombo()
        self.weights_combo.setObjectName("weights-combo")
        self.weights_combo.setSizeAdjustPolicy(fit)
        self.weights_combo.setMinimumContentsLength(20)
        self.device_combo = PopupCombo()
        self.device_combo.setObjectName("device-combo")
        self.device_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.device_combo.setToolTip("Where the model runs (remembered)")
        for d in DEVICES:
            self.device_combo.addItem(d, d)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(4)
        self.labels = []
        for text, combo in (("Model", self.model_combo), ("Weights", self.weights_combo),
                            ("Device", self.device_combo)):
            label = QtWidgets.QLabel(text)
            label.setBuddy(combo)
            lay.addSpacing(6)
            lay.addWidget(label)
            lay.addWidget(combo)
            self.labels.append(label)
        self.compact = False

        self.model_combo.activated.connect(self._on_model_activated)
        self.weights_combo.activated.connect(self._on_weights_activated)
        self.device_combo.activated.connect(self._on_device_activated)
        for combo in (self.model_combo, self.weights_combo, self.device_combo):
            combo.popupAboutToShow.connect(self.refresh_states)

        self.scanned = False  # states and devices read at least once
        self._rebuild()
        # A GPU remembered from last time is checked before the first run (so an unavailable one
        # falls back to auto instead of failing). Otherwise nothing imports torch before the first
        # paint: the states are read once torch is there, when the first run starts (scan_once),
        # or a few seconds after the picker is shown.
        if _torch_loaded() or device in ("cuda", "mps"):
            self.refresh_states(background=False)

    def set_compact(self, compact: bool) -> None:
        """Narrow windows: shorter boxes (their text elides; the full name is in the list and
        tooltip) and no captions, so the toolbar fits instead of hiding behind an overflow arrow."""
        if compact == self.compact:
            return
        self.compact = compact
        self.model_combo.setMinimumContentsLength(10 if compact else 24)
        self.weights_combo.setMinimumContentsLength(8 if compact else 20)
        # an explicit minimum: QComboBox keeps the minimum size hint of its longer length cached
        for combo, narrow in ((self.model_combo, 150), (self.weights_combo, 130)):
            combo.setMinimumWidth(narrow if compact else 0)
            combo.setMaximumWidth(narrow if compact else 16777215)
        for label in self.labels:
            label.setVisible(not compact)
        self.updateGeometry()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self.scanned:
            QtCore.QTimer.singleShot(3000, self.scan_once)

    @QtCore.Slot()
    def scan_once(self) -> None:
        """Read the states unless that was done (or is under way)."""
        if not self.scanned and not self._scanning:
            self.refresh_states()

    # -- what the window reads -----------------------------------------------------------------
    def state_of(self, name: str) -> str | None:
        """cached / downloadable / bundled / random, or None while still being read in the background."""
        if name not in self._states and _torch_loaded():
            try:
                self._states.update(scan_states([get_spec(name)]))
            except KeyError:
                return None
        entry = self._states.get(name)
        return entry[0] if entry else None

    def size_of(self, name: str) -> float | None:
        entry = self._states.get(name)
        return entry[1] if entry else None

    def device_reason(self, device: str) -> str | None:
        """Why `device` cannot be used (None: it can, or it is not known yet)."""
        return (self._devices or {}).get(device)

    def recent_models(self) -> list[str]:
        return [n for n in self._load_list("models/recent") if isinstance(n, str)]

    def recent_checkpoints(self) -> list[dict]:
        return [c for c in self._load_list("checkpoints/recent")
                if isinstance(c, dict) and isinstance(c.get("path"), str) and isinstance(c.get("model"), str)]

    # -- what the window tells it --------------------------------------------------------------
    def set_current(self, model: str, weights: str, device: str | None = None) -> None:
        """Show this model / weights / device (no signals: these are not user choices)."""
        self.model, self.weights = model, weights
        if device is not None:
            self.device = device
        self._rebuild()

    def remember(self, model: str, weights: str) -> None:
        """A setup that worked: first in the recent models (and checkpoints, for a file)."""
        models = [model] + [m for m in self.recent_models() if m != model]
        self._save_list("models/recent", models[:RECENT_MAX])
        if weights not in ("pretrained", "random"):
            path = os.path.abspath(weights)
            ckpts = [{"path": path, "model": model}] + [c for c in self.recent_checkpoints() if c["path"] != path]
            self._save_list("checkpoints/recent", ckpts[:RECENT_MAX])
        self._rebuild()

    def set_transient(self, name: str, text: str | None) -> None:
        """Show `text` instead of the model's weights state ("downloading 40%"); None: back to the state."""
        if text is None:
            self._transient.pop(name, None)
        else:
            self._transient[name] = text
        self._refresh_texts()
        self._rebuild_weights()

    def refresh_states(self, background: bool | None = None) -> None:
        """Re-read the weights states and device availability (files only, never the network).
        background None: in a thread unless torch is already imported."""
        if background is None:
            background = not _torch_loaded()
        specs = all_specs()
        if not background:
            self._on_scanned((scan_states(specs), scan_devices(), scan_hub()))
            return
        if self._scanning:
            return
        self._scanning = True

        def work() -> None:
            try:
                result = (scan_states(specs), scan_devices(), scan_hub())
            except Exception as exc:  # reported in the GUI thread
                result = exc
            try:
                self._scanned.emit(result)  # queued to the picker's slot in the GUI thread
            except RuntimeError:
                pass  # the window closed meanwhile

        threading.Thread(target=work, name="vitviz-weights-scan", daemon=True).start()

    @QtCore.Slot(object)
    def _on_scanned(self, result) -> None:
        self._scanning = False
        self.scanned = True
        if isinstance(result, Exception):
            return  # states stay unknown: nothing is asked, loading falls back with a note
        states, devices, hub = result
        self._states.update(states)
        self._hub = [spec for spec, _, _ in hub]
        self._states.update({spec.name: (state, mb) for spec, state, mb in hub})
        self._devices = devices
        if self.device in devices and devices[self.device] is not None:
            self.last_notice = f"{self.device}: {devices[self.device]} Using auto instead."
            self.device = "auto"
            self.settings.setValue("model/device", "auto")
            self._rebuild()
            self.deviceChosen.emit("auto")
            self.notice.emit(self.last_notice)
        else:
            self._rebuild()
        self.statesChanged.emit()

    # -- building the lists --------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._rebuild_models()
        self._rebuild_weights()
        self._rebuild_devices()

    def _state_text(self, name: str) -> tuple[str, QtGui.QIcon | None, str]:
        """(suffix, icon, tooltip) for a model entry."""
        if name in self._transient:
            return self._transient[name], _dot(STATES["downloadable"][1]), self._transient[name]
        entry = self._states.get(name)
        if entry is None:
            return "", None, "Checking where its weights are…"
        state, size = entry
        suffix, color, tip = STATES[state]
        if state == "downloadable" and size:
            suffix = f"download {format_mb(size)}"
        elif size:  # a hub-cache model: its size on disk
            suffix = f"{suffix} {format_mb(size)}" if state == "cached" else "config only, no weights"
        return suffix, _dot(color, hollow=state in ("downloadable", "random")), tip

    def _model_item(self, model: QtGui.QStandardItemModel, spec: ModelSpec, kind: str) -> None:
        self._named_item(model, spec.name, hub_label(spec) if spec.source in ("hf", "clip") else spec.label, kind)

    def _named_item(self, model: QtGui.QStandardItemModel, name: str, label: str, kind: str) -> None:
        item = QtGui.QStandardItem(label)
        item.setData(name, QtCore.Qt.ItemDataRole.UserRole)
        item.setData(kind, _KIND)
        item.setData(label, _LABEL)
        model.appendRow(item)

    def _header(self, model: QtGui.QStandardItemModel, text: str) -> None:
        item = QtGui.QStandardItem(text)
        item.setEnabled(False)
        item.setSelectable(False)
        item.setData("header", _KIND)
        f = item.font()
        f.setBold(True)
        item.setFont(f)
        item.setForeground(QtGui.QColor("#37474f"))  # a heading, not a greyed-out entry
        model.appendRow(item)

    def _rebuild_models(self) -> None:
        combo = self.model_combo
        model = QtGui.QStandardItemModel(combo)
        specs = all_specs()
        hub = [s for s in self._hub if s.name not in {r.name for r in specs}]
        by_name = {s.name: s for s in specs + hub}
        recent = [by_name[n] for n in self.recent_models() if n in by_name]
        if recent:
            self._header(model, "Recent")
            for spec in recent:
                self._model_item(model, spec, "recent")
        group = None
        for spec in specs:
            if hidden_group(spec.group) and spec.name != self.model:
                continue
            if spec.group != group:
                group = spec.group
                self._header(model, group or "Other")
            self._model_item(model, spec, "model")
        for spec in hub:  # grouped by scan_hub's sort: "Hugging Face hub cache", then its CLIP group
            if spec.group != group:
                group = spec.group
                self._header(model, group)
            self._model_item(model, spec, "model")
        if self.model and self.model not in by_name:  # a hub id before the scan, open_clip:NAME, ...
            self._header(model, "Other")
            self._named_item(model, self.model, self.model, "model")
        model.appendRow(self._open_item())
        combo.setModel(model)
        self._refresh_texts()
        combo.setCurrentIndex(self._index_of(self.model))

    def _open_item(self) -> QtGui.QStandardItem:
        item = QtGui.QStandardItem("Open checkpoint…")
        item.setData(OPEN_CHECKPOINT, QtCore.Qt.ItemDataRole.UserRole)
        item.setData("open", _KIND)
        item.setIcon(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_DirOpenIcon))
        item.setToolTip("Load a .pth / .pt / .safetensors file (torchvision, timm, DINO, DeiT, MAE, DETR)")
        return item

    def _index_of(self, name: str) -> int:
        """The model's entry in its family group (not the Recent copy)."""
        combo = self.model_combo
        for i in range(combo.count()):
            if combo.itemData(i) == name and combo.itemData(i, _KIND) == "model":
                return i
        return -1

    def _refresh_texts(self) -> None:
        combo = self.model_combo
        for i in range(combo.count()):
            if combo.itemData(i, _KIND) not in ("model", "recent"):
                continue
            name = combo.itemData(i)
            suffix, icon, tip = self._state_text(name)
            label = combo.itemData(i, _LABEL)
            combo.setItemText(i, f"{label}  ·  {suffix}" if suffix else label)
            combo.setItemIcon(i, icon or QtGui.QIcon())
            combo.setItemData(i, f"{name}: {tip}", QtCore.Qt.ItemDataRole.ToolTipRole)

    def _rebuild_weights(self) -> None:
        combo = self.weights_combo
        combo.clear()
        state = self._states.get(self.model, (None, None))[0]
        if self.model in self._transient:
            pre, tip = f"pretrained ({self._transient[self.model]})", self._transient[self.model]
        elif state is None:
            pre, tip = "pretrained", "The model's published weights (cached, or offered for download)"
        else:
            suffix, _, tip = self._state_text(self.model)
            pre = "pretrained" + (f" ({suffix})" if state != "random" else " (none published)")
            if state == "downloadable" and self.weights == "pretrained":
                # chosen but not on disk: what runs is random; say so where the choice is shown
                size = self._states[self.model][1]
                pre = "random: pretrained not downloaded" + (f" ({format_mb(size)})" if size else "")
                tip = ("Pretrained weights are not on this computer, so random (untrained) weights run. "
                       "Use the banner's Download button, or choose this entry again.")
        combo.addItem(pre, "pretrained")
        combo.setItemData(0, tip, QtCore.Qt.ItemDataRole.ToolTipRole)
        combo.addItem("random (untrained)", "random")
        combo.setItemData(1, "Randomly initialised: how an untrained network mixes tokens",
                          QtCore.Qt.ItemDataRole.ToolTipRole)
        ckpts = [c for c in self.recent_checkpoints() if os.path.isfile(c["path"])]
        current_is_file = self.weights not in ("pretrained", "random")
        if current_is_file and os.path.abspath(self.weights) not in {c["path"] for c in ckpts}:
            ckpts.insert(0, {"path": self.weights, "model": self.model})
        if ckpts:
            combo.insertSeparator(combo.count())
            for c in ckpts:
                combo.addItem(os.path.basename(c["path"]), c["path"])
                i = combo.count() - 1
                combo.setItemData(i, c["model"], _KIND)
                combo.setItemData(i, f"{c['path']}\n(with {c['model']})", QtCore.Qt.ItemDataRole.ToolTipRole)
        combo.insertSeparator(combo.count())
        combo.addItem(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_DirOpenIcon),
                      "Open checkpoint…", OPEN_CHECKPOINT)
        idx = combo.findData(self.weights)
        if idx < 0 and current_is_file:
            idx = combo.findData(os.path.abspath(self.weights))
        combo.setCurrentIndex(max(idx, 0))

    def _rebuild_devices(self) -> None:
        combo = self.device_combo
        items = combo.model()
        resolved = None
        if self._devices is not None:
            resolved = next((d for d in ("cuda", "mps") if self._devices.get(d) is None), "cpu")
        for i, d in enumerate(DEVICES):
            item = items.item(i)
            reason = None if self._devices is None else self._devices.get(d)
            pending = self._devices is None and d in ("cuda", "mps") and d != self.device
            item.setEnabled(reason is None and not pending)
            item.setText(f"auto ({resolved})" if d == "auto" and resolved else d)
            tip = {"auto": "The GPU when there is one (CUDA, then Apple MPS), else the CPU",
                   "cpu": "The CPU: always available"}.get(d, f"{d.upper()} GPU")
            if pending:
                tip = "Checking whether this GPU is available…"
            elif reason:
                tip = f"Not available: {reason}"
            item.setToolTip(tip)
        combo.setCurrentIndex(max(combo.findData(self.device), 0))

    # -- user choices --------------------------------------------------------------------------
    def _on_model_activated(self, index: int) -> None:
        name = self.model_combo.itemData(index)
        if name == OPEN_CHECKPOINT:
            self.model_combo.setCurrentIndex(self._index_of(self.model))
            self.openCheckpointRequested.emit()
            return
        if not name:
            return
        if name == self.model:
            self.model_combo.setCurrentIndex(self._index_of(name))  # the group entry, not Recent
            return
        # a checkpoint belongs to the model it was opened with: another model starts pretrained
        weights = self.weights if self.weights in ("pretrained", "random") else "pretrained"
        self.modelChosen.emit(name, weights)

    def _on_weights_activated(self, index: int) -> None:
        data = self.weights_combo.itemData(index)
        if data == OPEN_CHECKPOINT:
            self._rebuild_weights()  # back to what is in use until a file is picked
            self.openCheckpointRequested.emit()
            return
        if data in ("pretrained", "random"):
            self.modelChosen.emit(self.model, data)
        elif data:
            self.modelChosen.emit(self.weights_combo.itemData(index, _KIND) or self.model, data)

    def _on_device_activated(self, index: int) -> None:
        device = self.device_combo.itemData(index)
        if device and device != self.device:
            self.device = device
            self.settings.setValue("model/device", device)
            self.deviceChosen.emit(device)

    # -- settings ------------------------------------------------------------------------------
    def _load_list(self, key: str) -> list:
        try:
            value = json.loads(str(self.settings.value(key, "[]")))
        except (TypeError, ValueError):
            return []
        return value if isinstance(value, list) else []

    def _save_list(self, key: str, value: list) -> None:
        self.settings.setValue(key, json.dumps(value))  # JSON: an ini file turns 1-item lists into strings
