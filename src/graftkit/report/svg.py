"""Small inline-SVG charts for the HTML report: line / scatter charts with error bars, bar charts, a
reliability diagram and a heat map. Pure Python string building; every text that reaches the SVG goes
through ``esc`` (labels are user data)."""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
FONT = "font-family='system-ui, sans-serif' font-size='11'"


def esc(value) -> str:
    """HTML / SVG text and attribute escaping of any value (quotes included)."""
    return escape("" if value is None else str(value), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


class Axes:
    """A plot area with linear or log2 x, linear y, axis ticks and labels."""

    def __init__(self, x_range, y_range, *, width=440, height=300, x_label="", y_label="", title="", log_x=False):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 56, 14, 28 if title else 12, 42
        self.log_x = log_x
        self.x0, self.x1 = (math.log2(v) for v in x_range) if log_x else x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        self.parts: list[str] = []
        self.x_label, self.y_label, self.title = x_label, y_label, title
        self.x_range, self.y_range = x_range, y_range

    def x(self, value: float) -> float:
        value = math.log2(value) if self.log_x else value
        span = self.width - self.left - self.right
        return self.left + (value - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        return self.top + (1 - (value - self.y0) / (self.y1 - self.y0)) * span

    def frame(self) -> list[str]:
        out = [(f"<rect x='{self.left}' y='{self.top}' width='{self.width - self.left - self.right}' "
                f"height='{self.height - self.top - self.bottom}' fill='#fff' stroke='#999'/>")]
        if self.log_x:
            xs = [2 ** k for k in range(math.floor(self.x0), math.ceil(self.x1) + 1)
                  if self.x0 - 1e-9 <= k <= self.x1 + 1e-9]
        else:
            xs = _ticks(*self.x_range)
        for value in xs:
            px = self.x(value)
            out.append(f"<line x1='{_fmt(px)}' y1='{self.top}' x2='{_fmt(px)}' y2='{self.height - self.bottom}' "
                       "stroke='#eee'/>")
            out.append(f"<text x='{_fmt(px)}' y='{self.height - self.bottom + 14}' text-anchor='middle' {FONT}>"
                       f"{esc(_tick_label(value))}</text>")
        for value in _ticks(*self.y_range):
            py = self.y(value)
            out.append(f"<line x1='{self.left}' y1='{_fmt(py)}' x2='{self.width - self.right}' y2='{_fmt(py)}' "
                       "stroke='#eee'/>")
            out.append(f"<text x='{self.left - 6}' y='{_fmt(py + 4)}' text-anchor='end' {FONT}>"
                       f"{esc(_tick_label(value))}</text>")
        out.append(f"<text x='{(self.left + self.width - self.right) / 2}' y='{self.height - 8}' "
                   f"text-anchor='middle' {FONT}>{esc(self.x_label)}</text>")
        out.append(f"<text transform='translate(14 {(self.top + self.height - self.bottom) / 2}) rotate(-90)' "
                   f"text-anchor='middle' {FONT}>{esc(self.y_label)}</text>")
        if self.title:
            out.append(f"<text x='{self.left}' y='16' font-weight='bold' {FONT}>{esc(self.title)}</text>")
        return out

    def polyline(self, xs, ys, color, *, dash: str | None = None, width: float = 2.0, label: str = "") -> None:
        points = " ".join(f"{_fmt(self.x(x))},{_fmt(self.y(y))}" for x, y in zip(xs, ys)
                          if x is not None and y is not None)
        if points:
            style = f" stroke-dasharray='{dash}'" if dash else ""
            title = f"<title>{esc(label)}</title>" if label else ""
            self.parts.append(f"<polyline class='series' points='{points}' fill='none' stroke='{color}' "
                              f"stroke-width='{width}'{style}>{title}</polyline>")

    def dots(self, xs, ys, color, *, errors=None, labels=None) -> None:
        for i, (x, y) in enumerate(zip(xs, ys)):
            if errors is not None and errors[i]:
                low, high = self.y(y - errors[i]), self.y(y + errors[i])
                self.parts.append(f"<line x1='{_fmt(self.x(x))}' y1='{_fmt(low)}' x2='{_fmt(self.x(x))}' "
                                  f"y2='{_fmt(high)}' stroke='{color}' stroke-width='1.5'/>")
            title = f"<title>{esc(labels[i])}</title>" if labels else ""
            self.parts.append(f"<circle cx='{_fmt(self.x(x))}' cy='{_fmt(self.y(y))}' r='3.5' fill='{color}'>"
                              f"{title}</circle>")

    def legend(self, entries: list[tuple[str, str, str | None]], corner: str = "top-left") -> None:
        x = self.left + 8 if corner.endswith("left") else self.width - self.right - 190
        y = self.top + 14 if corner.startswith("top") else self.height - self.bottom - 8 - 15 * (len(entries) - 1)
        for label, color, dash in entries:
            style = f" stroke-dasharray='{dash}'" if dash else ""
            self.parts.append(f"<line x1='{x}' y1='{y - 4}' x2='{x + 18}' y2='{y - 4}' stroke='{color}' "
                              f"stroke-width='2'{style}/>")
            self.parts.append(f"<text x='{x + 24}' y='{y}' {FONT}>{esc(label)}</text>")
            y += 15

    def svg(self, description: str) -> str:
        return (f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' role='img' width='{self.width}' "
                f"height='{self.height}' viewBox='0 0 {self.width} {self.height}'><title>{esc(description)}</title>"
                + "".join(self.frame()) + "".join(self.parts) + "</svg>")


def reliability_svg(before: list[dict], after: list[dict], *, ece_before: float, ece_after: float,
                    title: str = "Reliability diagram", width: int = 440, height: int = 300) -> str:
    """Reliability diagram (Guo et al. 2017): accuracy per confidence bin before / after temperature scaling,
    against the diagonal of perfect calibration; bar opacity shows how many rows fall in the bin."""
    axes = Axes((0, 1), (0, 1), x_label="confidence", y_label="accuracy", title=title, width=width, height=height)
    axes.polyline([0, 1], [0, 1], "#888", dash="4 3", width=1)
    total = max(1, sum(b["count"] for b in before))
    for bins, color, shift in ((before, PALETTE[1], 0.0), (after, PALETTE[0], 0.5)):
        for b in bins:
            if b["accuracy"] is None:
                continue
            width = (b["upper"] - b["lower"]) / 2
            x0 = axes.x(b["lower"] + shift * (b["upper"] - b["lower"]))
            x1 = axes.x(b["lower"] + shift * (b["upper"] - b["lower"]) + width)
            top, base = axes.y(b["accuracy"]), axes.y(0)
            opacity = 0.35 + 0.65 * min(1.0, 5 * b["count"] / total)
            tip = "confidence {:.2f}-{:.2f}: accuracy {:.3f}, mean confidence {:.3f}, {} rows".format(
                b["lower"], b["upper"], b["accuracy"], b["confidence"], b["count"])
            axes.parts.append(
                f"<rect class='bin' x='{_fmt(x0)}' y='{_fmt(top)}' width='{_fmt(max(0.5, x1 - x0))}' "
                f"height='{_fmt(max(0.0, base - top))}' fill='{color}' fill-opacity='{opacity:.2f}'>"
                f"<title>{esc(tip)}</title></rect>")
    axes.legend([(f"before (ECE {ece_before:.3f})", PALETTE[1], None), (f"after T (ECE {ece_after:.3f})", PALETTE[0], None)])
    return axes.svg(f"{title} before and after temperature scaling")


def curve_svg(xs, ys, *, title: str, x_label: str, y_label: str, diagonal: bool = False, label: str = "",
              corner: str = "bottom-left") -> str:
    axes = Axes((0, 1), (0, 1), x_label=x_label, y_label=y_label, title=title)
    if diagonal:
        axes.polyline([0, 1], [0, 1], "#888", dash="4 3", width=1)
    axes.polyline(xs, ys, PALETTE[0], label=label)
    if label:
        axes.legend([(label, PALETTE[0], None)], corner)
    return axes.svg(title)


def learning_curve_svg(points: list[dict], extrapolation: dict | None, *, x: str = "per_class",
                       metric: str = "accuracy", x_label: str = "labelled examples per class",
                       y_label: str = "test accuracy") -> str:
    """Mean ``metric`` ± std over seeds against ``x`` (log scale), with the fitted power law when there is one.
    The y axis stays within [0, 1] where the values do."""
    xs = [p[x] for p in points]
    means = [p[metric]["mean"] for p in points]
    stds = [p[metric]["std"] for p in points]
    low = min(m - s for m, s in zip(means, stds)) - 0.05
    high = max(m + s for m, s in zip(means, stds)) + 0.05
    if all(0.0 <= m <= 1.0 for m in means):  # accuracy, F1: keep the axis within [0, 1]; R² may fall below 0
        low, high = max(0.0, low), min(1.0, high)
    x_high = max(xs)
    fitted = extrapolation and extrapolation.get("status") == "fitted"
    if fitted:
        high = min(1.0, max(high, extrapolation["a"] + 0.02))
    axes = Axes((min(xs), x_high), (low, high), x_label=f"{x_label} (log scale)", y_label=y_label,
                title="Learning curve", log_x=True)
    unit = "per class" if x == "per_class" else x
    labels = [f"{'all' if p.get('all') else p[x]} {unit}: {m:.4f} ± {s:.4f}" for p, m, s in zip(points, means, stds)]
    axes.polyline(xs, means, PALETTE[0])
    axes.dots(xs, means, PALETTE[0], errors=stds, labels=labels)
    entries = [("mean ± std over seeds", PALETTE[0], None)]
    if fitted:
        a, b, c = extrapolation["a"], extrapolation["b"], extrapolation["c"]
        grid = [2 ** (math.log2(min(xs)) + i * (math.log2(x_high) - math.log2(min(xs))) / 60) for i in range(61)]
        axes.polyline(grid, [min(high, max(low, a - b * g ** (-c))) for g in grid], PALETTE[3], dash="5 4", width=1.5)
        entries.append((f"fit a - b n^-c (a = {a:.3f})", PALETTE[3], "5 4"))
    axes.legend(entries, "bottom-right")
    return axes.svg(f"Learning curve: {y_label} against {x_label}")


def scatter_svg(xs, ys, *, title: str, x_label: str, y_label: str, band: float | None = None,
                max_points: int = 400) -> str:
    """Points ``(x, y)`` on equal axes with the line y = x (dashed lines at y = x ± ``band`` when given): a
    predicted-against-true plot. Pairs with a missing value are left out; each point's tooltip gives both."""
    pairs = [(float(a), float(b)) for a, b in zip(xs, ys) if a is not None and b is not None][:max_points]
    values = [v for pair in pairs for v in pair] or [0.0, 1.0]
    low, high = min(values), max(values)
    pad = 0.05 * (high - low or 1.0)
    low, high = low - pad, high + pad
    axes = Axes((low, high), (low, high), width=400, height=360, x_label=x_label, y_label=y_label, title=title)
    axes.polyline([low, high], [low, high], "#888", dash="4 3", width=1, label="y = x")
    entries = [("y = x", "#888", "4 3")]
    if band:
        for shift in (band, -band):
            ends = [max(low, low - shift), min(high, high - shift)]
            if ends[0] < ends[1]:
                axes.polyline(ends, [e + shift for e in ends], PALETTE[3], dash="2 3", width=1)
        entries.append((f"y = x ± {band:.4g}", PALETTE[3], "2 3"))
    for a, b in pairs:
        axes.parts.append(f"<circle class='point' cx='{_fmt(axes.x(a))}' cy='{_fmt(axes.y(b))}' r='2.5' "
                          f"fill='{PALETTE[0]}' fill-opacity='0.6'><title>{esc(f'{x_label} {a:.4g}, {y_label} {b:.4g}')}"
                          "</title></circle>")
    axes.legend(entries, "top-left")
    return axes.svg(title)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _wrap(text: str, width: int, lines: int = 2) -> list[str]:
    """``text`` in at most ``lines`` lines of about ``width`` characters, broken at spaces; the rest elided."""
    out, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    out.append(current)
    if len(out) > lines:
        out = out[:lines - 1] + [" ".join(out[lines - 1:])]
    return [_shorten(line, width) for line in out]


def bars_svg(items: list[tuple[str, float]], *, title: str, y_label: str, highlight: int = 0,
             y_max: float | None = None) -> str:
    """Vertical bars with their values printed on top; the axis runs from 0 to ``y_max`` (default: 1 for
    accuracies, else a little above the largest value). Labels are slanted when there are many bars."""
    many = len(items) > 3
    width, height, left, bottom, top = 440, 300 if many else 260, 56, 110 if many else 60, 28
    ceiling = y_max or (1.0 if all(v <= 1.0 for _, v in items) and max((v for _, v in items), default=0) > 0.2
                        else max([v for _, v in items] + [1e-9]) * 1.15)
    span = (width - left - 20) / max(1, len(items))
    parts = [f"<text x='{left}' y='16' font-weight='bold' {FONT}>{esc(title)}</text>",
             f"<line x1='{left}' y1='{height - bottom}' x2='{width - 20}' y2='{height - bottom}' stroke='#999'/>"]
    for tick in _ticks(0, ceiling):
        py = top + (1 - tick / ceiling) * (height - top - bottom)
        parts.append(f"<line x1='{left}' y1='{_fmt(py)}' x2='{width - 20}' y2='{_fmt(py)}' stroke='#eee'/>")
        parts.append(f"<text x='{left - 6}' y='{_fmt(py + 4)}' text-anchor='end' {FONT}>{esc(_tick_label(tick))}</text>")
    for i, (label, value) in enumerate(items):
        shown_value = value
        value = max(0.0, min(ceiling, value))
        x = left + i * span + span * 0.2
        h = value / ceiling * (height - top - bottom)
        color = PALETTE[0] if i == highlight else "#9aa5b1"
        parts.append(f"<rect class='bar' x='{_fmt(x)}' y='{_fmt(height - bottom - h)}' width='{_fmt(span * 0.6)}' "
                     f"height='{_fmt(h)}' fill='{color}'><title>{esc(f'{label}: {shown_value:.4f}')}</title></rect>")
        parts.append(f"<text x='{_fmt(x + span * 0.3)}' y='{_fmt(height - bottom - h - 4)}' text-anchor='middle' "
                     f"{FONT}>{shown_value:.3g}</text>")
        if many:
            parts.append(f"<text transform='translate({_fmt(x + span * 0.3)} {height - bottom + 12}) rotate(35)' "
                         f"{FONT}>{esc(_shorten(label, 20))}</text>")
        else:  # up to two lines that fit the bar's slot
            lines = _wrap(label, max(6, int(span / 6.3)))
            spans = "".join(f"<tspan x='{_fmt(x + span * 0.3)}' dy='{0 if k == 0 else 13}'>{esc(line)}</tspan>"
                            for k, line in enumerate(lines))
            parts.append(f"<text x='{_fmt(x + span * 0.3)}' y='{height - bottom + 16}' text-anchor='middle' {FONT}>"
                         f"{spans}</text>")
    parts.append(f"<text transform='translate(14 {(top + height - bottom) / 2}) rotate(-90)' text-anchor='middle' "
                 f"{FONT}>{esc(y_label)}</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' role='img' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'><title>{esc(title)}</title>{''.join(parts)}</svg>")


def heatmap_svg(matrix: list[list[int]], labels: list[str], *, title: str = "Confusion matrix") -> str:
    """Row-normalised confusion matrix (rows: true class, columns: predicted); counts in each cell's tooltip,
    and printed in the cell when the matrix is small."""
    k = len(labels)
    cell = max(6, min(36, 640 // max(1, k)))
    label_space = 0 if k > 40 else min(160, 7 * max(len(str(l)) for l in labels) + 8)
    left = top = label_space + 24
    size = k * cell
    width, height = left + size + 10, top + size + 10
    parts = [f"<text x='4' y='14' font-weight='bold' {FONT}>{esc(title)} (rows: true, columns: predicted)</text>"]
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        for j, count in enumerate(row):
            share = count / total
            if i == j:
                color = f"rgba(31,119,180,{0.1 + 0.9 * share:.3f})"
            else:
                color = f"rgba(214,39,40,{min(1.0, 0.05 + 1.5 * share) if count else 0:.3f})"
            parts.append(f"<rect class='cell' x='{left + j * cell}' y='{top + i * cell}' width='{cell}' "
                         f"height='{cell}' fill='{color}' stroke='#f4f4f4'><title>{esc(f'true {labels[i]} → predicted {labels[j]}: {count}')}</title></rect>")
            if cell >= 24 and count:
                parts.append(f"<text x='{left + j * cell + cell / 2}' y='{top + i * cell + cell / 2 + 4}' "
                             f"text-anchor='middle' {FONT}>{count}</text>")
    if label_space:
        for i, label in enumerate(labels):
            shown = str(label) if len(str(label)) <= 22 else str(label)[:21] + "…"
            parts.append(f"<text x='{left - 4}' y='{top + i * cell + cell / 2 + 4}' text-anchor='end' {FONT}>"
                         f"{esc(shown)}</text>")
            parts.append(f"<text transform='translate({left + i * cell + cell / 2 + 4} {top - 4}) rotate(-90)' "
                         f"{FONT}>{esc(shown)}</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='chart heatmap' role='img' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}'><title>{esc(title)}</title>{''.join(parts)}</svg>")
