"""The evidence under the comparison's maps: deletion and insertion curves, the sanity check's
cascading-randomisation curve (Spearman rho with the original map after each unit re-initialised,
the threshold dashed) and one table of AUCs and flags. It only draws what it is given: the window's
worker computes (vitviz.core.faithfulness)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

BG = "#202124"
COLUMNS = ("Method", "Del ↓", "Ins ↑", "Pos ↓", "Neg ↑", "ρ", "Sanity")
HEADER_TIPS = ("the column (its colour in the plots)",
               "deletion AUC: the most relevant pixels replaced by the channel mean first (lower: more faithful)",
               "insertion AUC: the most relevant pixels put back into a blurred copy first (higher: more faithful)",
               "positive perturbation AUC, 10%..90% of the most relevant pixels removed (lower: more faithful)",
               "negative perturbation AUC, 10%..90% of the least relevant pixels removed (higher: more faithful)",
               "sanity check: Spearman rank correlation with the trained map once every weight is random",
               "flagged: the map still correlates above the threshold with every weight random")
SANITY_COL = 6
FLAG = "#d93025"


def short_unit(name: str) -> str:
    """'block 3' -> 'b3', 'stage 2 block 1' -> 's2b1', 'merge after stage 0' -> 'm0', 'embedding' -> 'emb'."""
    parts = name.split()
    if name == "embedding":
        return "emb"
    if parts[0] == "merge":
        return f"m{parts[-1]}"
    if parts[0] == "stage":
        return f"s{parts[1]}b{parts[3]}"
    if parts[0] == "block":
        return f"b{parts[1]}"
    return name


def _plot(title: str, xlabel: str, ylabel: str, legend_offset) -> pg.PlotWidget:
    p = pg.PlotWidget(background=BG)
    p.setMenuEnabled(False)
    p.hideButtons()
    p.setTitle(title, color="w", size="9pt")
    p.setLabel("bottom", xlabel)
    p.setLabel("left", ylabel)
    p.setMinimumWidth(150)
    p.showGrid(x=True, y=True, alpha=0.2)
    if legend_offset is not None:
        p.addLegend(offset=legend_offset, labelTextSize="8pt", brush=pg.mkBrush(32, 33, 36, 200))
    return p


class CurvesPanel(QtWidgets.QWidget):
    """Three plots and the table, side by side."""

    def __init__(self, parent=None):
        super().__init__(parent)
        # one legend (insertion's lower right, where rising curves are not): the table's swatches are the other
        self.deletion_plot = _plot("Deletion", "fraction removed", "p(target)", None)
        self.insertion_plot = _plot("Insertion", "fraction inserted", "p(target)", (-5, -5))
        for p in (self.deletion_plot, self.insertion_plot):
            p.setXRange(0, 1, padding=0.02)
            p.setYRange(0, 1, padding=0.02)
        self.sanity_plot = _plot("Sanity check", "re-initialised down to", "Spearman ρ", None)
        self.sanity_plot.setYRange(-1, 1, padding=0.02)
        self.sanity_plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)  # "trained" at the edge
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        for i, (name, tip) in enumerate(zip(COLUMNS, HEADER_TIPS)):
            item = QtWidgets.QTableWidgetItem(name)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(i, item)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        head.setMinimumSectionSize(30)
        font = self.table.font()
        font.setPointSizeF(font.pointSizeF() * 0.85)
        self.table.setFont(font)
        head.setFont(font)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAutoFillBackground(True)  # the gaps between the plots dark as they are (and in the figure)
        pal = self.palette()
        pal.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor(BG))
        self.setPalette(pal)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.deletion_plot, 3)
        row.addWidget(self.insertion_plot, 3)
        row.addWidget(self.sanity_plot, 3)
        row.addWidget(self.table, 4)
        self.rows: dict[str, dict] = {}  # key -> {"label", "pen", "curves", "perturbation", "sanity"}
        self.clear()

    def clear(self) -> None:
        self.rows = {}
        self.sanity_lines: dict[str, pg.PlotDataItem] = {}  # key -> rho per step (NaN drawn as 0)
        for p in (self.deletion_plot, self.insertion_plot, self.sanity_plot):
            p.clear()
            if p.getPlotItem().legend is not None:
                p.getPlotItem().legend.clear()
        line = pg.InfiniteLine(pos=0.9, angle=0, pen=pg.mkPen("#ffb000", width=1, style=QtCore.Qt.PenStyle.DashLine))
        line.setToolTip("flag threshold: a map still above it once every weight is random is flagged")
        self.sanity_plot.addItem(line)
        self._hint = pg.TextItem("tick 'Sanity check' and compute", color="#9aa0a6", anchor=(0.5, 0.5))
        self._hint.setPos(0.5, 0)
        self.sanity_plot.addItem(self._hint)
        self.sanity_plot.setXRange(0, 1, padding=0.05)
        self.sanity_plot.getAxis("bottom").setTicks(None)
        self.table.setRowCount(0)

    def _row(self, key: str, label: str, pen=None) -> dict:
        row = self.rows.setdefault(key, {"label": label, "pen": None, "curves": None, "perturbation": None,
                                         "sanity": None})
        row["pen"] = pen if pen is not None else row["pen"]
        return row

    def add_curves(self, key: str, label: str, f, pen) -> None:
        """A Faithfulness (vitviz.core.faithfulness): its deletion and insertion lines and AUCs."""
        self._row(key, label, pen)["curves"] = f
        self.deletion_plot.plot(f.fractions, f.deletion, pen=pen, name=label)
        self.insertion_plot.plot(f.fractions, f.insertion, pen=pen, name=label)
        self.fill_table()

    def add_perturbation(self, key: str, label: str, p) -> None:
        self._row(key, label)["perturbation"] = p
        self.fill_table()

    def add_sanity(self, key: str, label: str, s, pen) -> None:
        """A Sanity result (or an error text): rho per step, step 0 the trained model (rho 1)."""
        self._row(key, label)["sanity"] = s
        if not isinstance(s, str):
            if self._hint is not None:
                self.sanity_plot.removeItem(self._hint)
                self._hint = None
            x = np.arange(len(s.steps) + 1)
            y = np.concatenate([[1.0], np.asarray(s.correlations, dtype=np.float64)])
            width = 3 if s.flagged else 2
            self.sanity_lines[key] = self.sanity_plot.plot(x, np.nan_to_num(y, nan=0.0), pen=pg.mkPen(pen.color(), width=width),
                                  symbol="o", symbolSize=5, symbolBrush=pen.color(), symbolPen=None)
            self._sanity_ticks(["trained", *s.steps])  # x: units re-initialised so far
        self.fill_table()

    def _sanity_ticks(self, names: list[str]) -> None:
        """names[0] is the trained model ("none" re-initialised); a label every k-th unit, as many as fit."""
        fit = max(2, (self.sanity_plot.width() - 60) // 34)
        every = max(1, int(np.ceil(len(names) / fit)))
        major = [(i, "none" if i == 0 else short_unit(n)) for i, n in enumerate(names) if i % every == 0]
        minor = [(i, "") for i in range(len(names)) if i % every]
        self.sanity_plot.getAxis("bottom").setTicks([major, minor])
        # room for the end labels (with the grid on, pyqtgraph drops a label that crosses the axis's ends)
        per_unit = max(1.0, (self.sanity_plot.width() - 60) / (len(names) + 1))
        pad = max(0.6, 18 / per_unit)
        self.sanity_plot.setXRange(-pad, len(names) - 1 + pad, padding=0)

    def fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows.values()):
            f, p, s = row["curves"], row["perturbation"], row["sanity"]
            rho = "" if s is None else ("error" if isinstance(s, str) else
                                        "nan" if not np.isfinite(s.correlations[-1]) else f"{s.correlations[-1]:.2f}")
            flag = "" if s is None else ("error" if isinstance(s, str) else ("flagged" if s.flagged else "ok"))
            cells = [row["label"],
                     "" if f is None else f"{f.deletion_auc:.3f}", "" if f is None else f"{f.insertion_auc:.3f}",
                     "" if p is None else f"{p.positive_auc:.3f}", "" if p is None else f"{p.negative_auc:.3f}",
                     rho, flag]
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if col == 0:
                    item.setToolTip(text)
                    if row["pen"] is not None:
                        item.setIcon(_swatch(row["pen"]))
                if col >= 5 and flag == "flagged":
                    item.setForeground(QtGui.QColor(FLAG))
                    item.setToolTip(f"the map still correlates {rho} with the original once every weight is "
                                    "random: it does not reflect what the model learned")
                elif col >= 5 and isinstance(s, str):
                    item.setToolTip(s)
                self.table.setItem(r, col, item)


def _swatch(pen) -> QtGui.QIcon:
    """A short line in the pen's colour and style: the table is the plots' legend."""
    pix = QtGui.QPixmap(18, 10)
    pix.fill(QtGui.QColor(0, 0, 0, 0))
    painter = QtGui.QPainter(pix)
    p = QtGui.QPen(pen)
    p.setWidthF(2.5)
    p.setCosmetic(True)
    painter.setPen(p)
    painter.drawLine(1, 5, 17, 5)
    painter.end()
    return QtGui.QIcon(pix)
