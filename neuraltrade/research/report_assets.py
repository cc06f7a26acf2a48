"""The report page's own stylesheet and script, inlined into every report (see `neuraltrade.research.report`).

The script draws the charts as SVG from the JSON embedded in the page and marks the body with
``data-rendered`` once every chart is drawn; the page's Content-Security-Policy admits exactly these two
blocks by their hashes, computed when a report is rendered. The equity chart's "Log scale" button
switches its axis between linear and logarithmic (``data-scale`` on the chart says which; a page opened
with ``#log`` starts logarithmic).
"""

STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --grid: #e4e7eb; --frame: #cbd2d9; --up: #1a9850; --down: #d73027;
  --flat: #8a8f98; --equity: #1f4e9c; --price: #3e4c59; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px 40px; font: 14px/1.4 system-ui, sans-serif; color: var(--ink); background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 14px 0 4px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.error { background: #fde8e8; border: 1px solid var(--down); padding: 8px 12px; white-space: pre-wrap;
  font: 12px monospace; }
.chart { position: relative; }
svg.plot { display: block; width: 100%; }
.legend { font-weight: normal; font-size: 12px; color: var(--muted); }
.chart h2 { display: flex; align-items: baseline; gap: 4px; }
button.scale { margin-left: auto; font: 12px system-ui, sans-serif; color: var(--ink); background: #fff;
  border: 1px solid var(--frame); border-radius: 4px; padding: 1px 10px; cursor: pointer; }
button.scale:hover { border-color: var(--equity); }
button.scale[aria-pressed="true"] { color: #fff; background: var(--equity); border-color: var(--equity); }
.legend .note { margin-left: 14px; font-style: italic; }
.legend .key::before { content: ""; display: inline-block; width: 14px; height: 3px; margin: 0 4px 3px 14px;
  vertical-align: middle; background: var(--flat); }
.legend .equity::before { background: var(--equity); }
.legend .long::before, .legend .win::before { background: var(--up); }
.legend .short::before, .legend .loss::before { background: var(--down); }
.grid { stroke: var(--grid); }
.frame { fill: none; stroke: var(--frame); }
.tick { font-size: 11px; fill: var(--muted); }
.series { fill: none; stroke-width: 1.5; stroke-linejoin: round; }
.series.equity { stroke: var(--equity); }
.series.buy-hold { stroke: var(--flat); stroke-width: 1.2; stroke-dasharray: 4 3; }
.series.drawdown { stroke: var(--down); stroke-width: 1; }
.area.drawdown { fill: var(--down); fill-opacity: 0.25; }
.series.price { stroke: var(--price); stroke-width: 1.2; }
.marker { stroke: #fff; stroke-width: 1; }
.long, .win { fill: var(--up); stroke: var(--up); }
.short, .loss { fill: var(--down); stroke: var(--down); }
.flat { fill: var(--flat); stroke: var(--flat); }
.marker.long, .marker.short, .marker.win, .marker.loss, .marker.flat { stroke: #fff; }
.link { fill: none; stroke-width: 1; stroke-dasharray: 3 2; }
.crosshair { stroke: #9aa5b1; stroke-dasharray: 2 2; }
.dot { fill: #fff; stroke: var(--ink); stroke-width: 1.5; }
.tooltip { position: absolute; pointer-events: none; background: rgba(255, 255, 255, 0.95);
  border: 1px solid var(--frame); border-radius: 4px; padding: 4px 8px; font-size: 12px; white-space: nowrap;
  box-shadow: 0 1px 3px rgba(0, 0, 0, 0.15); }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--grid); text-align: left; font-weight: normal; }
thead th, .statistics th { color: var(--muted); }
td.number { text-align: right; }
tr.win td.pnl { color: var(--up); }
tr.loss td.pnl { color: var(--down); }
.config { background: #f5f7fa; padding: 8px 12px; overflow-x: auto; }
"""

SCRIPT = """
(() => {
  "use strict";
  const body = document.body;
  const fail = (error) => {
    const box = document.getElementById("error");
    box.textContent = "The charts could not be drawn: " + ((error && error.stack) || String(error));
    box.hidden = false;
    body.dataset.rendered = "error";
  };
  window.addEventListener("error", (event) => fail(event.error || event.message));
  try {
    const data = JSON.parse(document.getElementById("report-data").textContent);
    const namespace = document.querySelector("svg.plot").namespaceURI;
    const make = (parent, name, attributes, text) => {
      const node = document.createElementNS(namespace, name);
      for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
      if (text !== undefined) node.textContent = text;
      parent.appendChild(node);
      return node;
    };
    const lastBar = Math.max(1, data.bars - 1);
    const expand = (steps) => { let at = 0; return steps.map((step) => (at += step)); };
    const timeBars = expand(data.time.bar_step);
    const timeMs = expand(data.time.step).map((units) => data.time.origin_ms + units * data.time.unit_ms);
    const decode = (series) => series && {bar: expand(series.bar_step), value: series.value};
    const below = (array, value) => {  // index of the last element <= value (0 if none)
      let low = 0, high = array.length - 1;
      while (low < high) {
        const middle = (low + high + 1) >> 1;
        if (array[middle] <= value) low = middle; else high = middle - 1;
      }
      return low;
    };
    const nearest = (array, value) => {
      const index = below(array, value);
      return index + 1 < array.length && array[index + 1] - value < value - array[index] ? index + 1 : index;
    };
    const timeAt = (bar) => {
      const index = below(timeBars, bar);
      if (timeBars[index] >= bar || index + 1 >= timeBars.length) return timeMs[index];
      const share = (bar - timeBars[index]) / (timeBars[index + 1] - timeBars[index]);
      return timeMs[index] + share * (timeMs[index + 1] - timeMs[index]);
    };
    const pad = (number) => String(number).padStart(2, "0");
    const dayOf = (date) => date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate());
    const clockOf = (date) => pad(date.getUTCHours()) + ":" + pad(date.getUTCMinutes());
    const formatTime = (ms) => {
      const date = new Date(ms);
      return data.intraday ? dayOf(date) + " " + clockOf(date) : dayOf(date);
    };
    const MINUTE = 60e3, DAY = 1440 * MINUTE, YEAR = 365.25 * DAY;
    const STEPS = [[1, "m"], [5, "m"], [15, "m"], [30, "m"], [60, "m"], [120, "m"], [360, "m"], [720, "m"],
      [1, "d"], [1, "w"], [1, "M"], [3, "M"], [6, "M"], [1, "Y"], [2, "Y"], [5, "Y"], [10, "Y"], [25, "Y"],
      [50, "Y"], [100, "Y"]];
    const SPAN = {m: MINUTE, d: DAY, w: 7 * DAY, M: YEAR / 12, Y: YEAR};
    const bucketOf = (ms, count, unit) => {
      const date = new Date(ms);
      if (unit === "Y") return Math.floor(date.getUTCFullYear() / count);
      if (unit === "M") return Math.floor((date.getUTCFullYear() * 12 + date.getUTCMonth()) / count);
      if (unit === "w") return Math.floor((ms / DAY + 3) / 7);  // weeks start on Monday; 1970-01-01 was a Thursday
      if (unit === "d") return Math.floor(ms / DAY);
      return Math.floor(ms / (count * MINUTE));
    };
    const tickLabel = (ms, unit) => {
      const date = new Date(ms);
      if (unit === "Y") return String(date.getUTCFullYear());
      if (unit === "M") return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1);
      if (unit === "m") return pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate()) + " " + clockOf(date);
      return dayOf(date);
    };
    const dateTicks = (x, width) => {
      const span = timeMs[timeMs.length - 1] - timeMs[0];
      const wanted = Math.max(2, Math.floor(width / 90));
      const [count, unit] = STEPS.find(([n, u]) => span / (n * SPAN[u]) <= wanted) || STEPS[STEPS.length - 1];
      const ticks = [];
      let previous = bucketOf(timeMs[0], count, unit), lastX = -Infinity;
      for (let index = 1; index < timeMs.length; index++) {
        const bucket = bucketOf(timeMs[index], count, unit);
        if (bucket === previous) continue;
        previous = bucket;
        const position = x(timeBars[index]);
        if (position - lastX < 70) continue;
        ticks.push([position, tickLabel(timeMs[index], unit)]);
        lastX = position;
      }
      return ticks;
    };
    const niceStep = (span, count) => {
      const rough = span / count, magnitude = Math.pow(10, Math.floor(Math.log10(rough))), ratio = rough / magnitude;
      return (ratio < 1.5 ? 1 : ratio < 3 ? 2 : ratio < 7 ? 5 : 10) * magnitude;
    };
    const formatNumber = (value, decimals) => value.toLocaleString("en-US",
      {minimumFractionDigits: decimals, maximumFractionDigits: decimals});
    const formatValue = (value) => Math.abs(value) >= 1 || value === 0 ? formatNumber(value, 2)
      : value.toLocaleString("en-US", {maximumSignificantDigits: 4});
    // Units whole when whole (as neuraltrade.formatting.format_quantity): "12", never "12.00".
    const formatQuantity = (value) => value.toLocaleString("en-US", {maximumFractionDigits: 4});
    const MARGIN = {left: 78, right: 18, top: 10, bottom: 26};

    const draw = (section, spec) => {
      const svg = section.querySelector("svg.plot"), tip = section.querySelector(".tooltip");
      svg.replaceChildren();
      const width = Math.max(320, section.clientWidth || 960), height = spec.height;
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      svg.setAttribute("width", width);
      svg.setAttribute("height", height);
      const left = MARGIN.left, right = width - MARGIN.right, top = MARGIN.top, bottom = height - MARGIN.bottom;
      const x = (bar) => left + (bar / lastBar) * (right - left);
      // On a log axis a value is placed by its logarithm; a value at or below zero has no place (a gap).
      const log = spec.log === true;
      const scaled = (value) => value === null || !Number.isFinite(value) ? null
        : log ? (value > 0 ? Math.log10(value) : null) : value;
      let low = Infinity, high = -Infinity;
      const widen = (value) => {
        const at = scaled(value);
        if (at === null) return;
        low = Math.min(low, at);
        high = Math.max(high, at);
      };
      spec.series.forEach((series) => series.value.forEach(widen));
      (spec.extent || []).forEach(widen);
      if (low === Infinity) { low = 0; high = 1; }
      if (spec.zeroTop) high = Math.max(high, 0);
      if (high - low < 1e-12 * Math.max(1, Math.abs(high))) {
        low -= Math.abs(low) * 0.05 || 1;
        high += Math.abs(high) * 0.05 || 1;
      }
      const margin = (high - low) * 0.04;
      low -= margin;
      if (!spec.zeroTop) high += margin;
      const place = (at) => bottom - ((at - low) / (high - low)) * (bottom - top);
      const y = (value) => place(scaled(value));
      const axes = make(svg, "g", {class: "axes"});
      const rows = Math.max(2, Math.floor((bottom - top) / 45));
      const tick = (value, label) => {
        const position = y(value).toFixed(1);
        make(axes, "line", {class: "grid", x1: left, x2: right, y1: position, y2: position});
        make(axes, "text", {class: "tick y", x: left - 6, y: position, "text-anchor": "end",
          "dominant-baseline": "middle"}, label + (spec.unit || ""));
      };
      if (log && high - low > 0.6) {
        // 1, 2 and 5 of each decade when they fit, else every decade, every other decade, ...
        const decades = [];
        for (let power = Math.floor(low); power <= Math.ceil(high); power++) decades.push(power);
        const fine = decades.flatMap((power) => [1, 2, 5].map((mantissa) => mantissa * Math.pow(10, power)));
        const inside = (value) => Math.log10(value) >= low && Math.log10(value) <= high;
        let values = fine.filter(inside);
        if (values.length > rows) {
          const every = Math.ceil(decades.length / rows);
          values = decades.filter((power) => power % every === 0).map((power) => Math.pow(10, power)).filter(inside);
        }
        values.forEach((value) => tick(value, value.toLocaleString("en-US", {maximumSignificantDigits: 3})));
      } else {
        const lowValue = log ? Math.pow(10, low) : low, highValue = log ? Math.pow(10, high) : high;
        const step = niceStep(highValue - lowValue, rows);
        const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step))));
        for (let value = Math.ceil(lowValue / step) * step; value <= highValue; value += step) {
          if (log && value <= 0) continue;
          tick(value, formatNumber(Math.abs(value) < step / 1e6 ? 0 : value, decimals));
        }
      }
      for (const [position, label] of dateTicks(x, right - left)) {
        make(axes, "line", {class: "grid", x1: position.toFixed(1), x2: position.toFixed(1), y1: top, y2: bottom});
        make(axes, "text", {class: "tick x", x: position.toFixed(1), y: bottom + 17, "text-anchor": "middle"}, label);
      }
      make(axes, "rect", {class: "frame", x: left, y: top, width: right - left, height: bottom - top});
      for (const series of spec.series) {
        let path = "", pen = false, points = 0;
        series.value.forEach((value, index) => {
          if (scaled(value) === null) { pen = false; return; }
          path += (pen ? "L" : "M") + x(series.bar[index]).toFixed(1) + "," + y(value).toFixed(1);
          pen = true;
          points += 1;
        });
        if (series.area && points > 0) {
          const base = y(0).toFixed(1), first = x(series.bar[0]).toFixed(1);
          const last = x(series.bar[series.bar.length - 1]).toFixed(1);
          const outline = "M" + first + "," + base + "L" + path.slice(1) + "L" + last + "," + base + "Z";
          make(svg, "path", {class: "area " + series.css, d: outline});
        }
        make(svg, "path", {class: "series " + series.css, d: path, "data-points": points});
      }
      const crosshair = make(svg, "line", {class: "crosshair", y1: top, y2: bottom, visibility: "hidden"});
      const dots = spec.series.map(() => make(svg, "circle", {class: "dot", r: 3, visibility: "hidden"}));
      const markers = make(svg, "g", {class: "trades"});
      for (const trade of spec.trades || []) {
        const outcome = trade.pnl > 0 ? "win" : trade.pnl < 0 ? "loss" : "flat";
        const long = trade.size > 0;
        const title = (long ? "long " : "short ") + formatQuantity(Math.abs(trade.size)) + " " + trade.symbol
          + " at " + formatValue(trade.entry_price) + (trade.exit_bar === null ? " (open)" : " to "
          + formatValue(trade.exit_price) + ", P&L " + formatValue(trade.pnl || 0)
          + " (" + formatNumber(trade.return_pct || 0, 2) + " %), " + trade.exit_reason);
        const entryX = x(trade.entry_bar), entryY = y(trade.entry_price);
        const group = make(markers, "g", {class: "trade " + outcome});
        if (trade.exit_bar !== null) {
          make(group, "line", {class: "link " + outcome, x1: entryX.toFixed(1), y1: entryY.toFixed(1),
            x2: x(trade.exit_bar).toFixed(1), y2: y(trade.exit_price).toFixed(1)});
        }
        const apex = long ? -7 : 7, foot = long ? 5 : -5;
        const triangle = "M" + entryX.toFixed(1) + "," + (entryY + apex).toFixed(1)
          + "L" + (entryX + 6).toFixed(1) + "," + (entryY + foot).toFixed(1)
          + "L" + (entryX - 6).toFixed(1) + "," + (entryY + foot).toFixed(1) + "Z";
        const entry = make(group, "path", {class: "marker entry " + (long ? "long" : "short"), d: triangle});
        make(entry, "title", {}, title);
        if (trade.exit_bar !== null) {
          const exit = make(group, "circle", {class: "marker exit " + outcome, r: 4.5,
            cx: x(trade.exit_bar).toFixed(1), cy: y(trade.exit_price).toFixed(1)});
          make(exit, "title", {}, title);
        }
      }
      const hide = () => {
        tip.hidden = true;
        crosshair.setAttribute("visibility", "hidden");
        dots.forEach((dot) => dot.setAttribute("visibility", "hidden"));
      };
      svg.onmouseleave = hide;
      svg.onmousemove = (event) => {
        const box = svg.getBoundingClientRect(), px = event.clientX - box.left, py = event.clientY - box.top;
        if (px < left || px > right || py < top || py > bottom) { hide(); return; }
        const bar = Math.round(((px - left) / (right - left)) * lastBar);
        const lines = [formatTime(timeAt(bar))];
        spec.series.forEach((series, index) => {
          const at = nearest(series.bar, bar), value = series.value[at];
          if (value === null) { dots[index].setAttribute("visibility", "hidden"); return; }
          if (scaled(value) === null) {
            dots[index].setAttribute("visibility", "hidden");
            lines.push(series.label + ": " + formatValue(value) + (spec.unit || ""));
            return;
          }
          dots[index].setAttribute("cx", x(series.bar[at]).toFixed(1));
          dots[index].setAttribute("cy", y(value).toFixed(1));
          dots[index].setAttribute("visibility", "visible");
          lines.push(series.label + ": " + formatValue(value) + (spec.unit || ""));
        });
        for (const trade of spec.trades || []) {
          if (trade.entry_bar === bar) {
            lines.push("entry " + (trade.size > 0 ? "long" : "short") + " at " + formatValue(trade.entry_price));
          }
          if (trade.exit_bar === bar) {
            lines.push("exit at " + formatValue(trade.exit_price) + ", P&L " + formatValue(trade.pnl || 0));
          }
        }
        crosshair.setAttribute("x1", x(bar).toFixed(1));
        crosshair.setAttribute("x2", x(bar).toFixed(1));
        crosshair.setAttribute("visibility", "visible");
        tip.replaceChildren(...lines.map((line) => {
          const row = document.createElement("div");
          row.textContent = line;
          return row;
        }));
        tip.hidden = false;
        const offset = box.top - section.getBoundingClientRect().top;
        tip.style.left = Math.min(px + 14, width - tip.offsetWidth - 4) + "px";
        tip.style.top = offset + Math.max(0, py - tip.offsetHeight - 10) + "px";
      };
    };

    const charts = [["equity", document.getElementById("chart-equity"), {height: 300, series: [
      {css: "equity", label: "Equity", ...decode(data.equity)},
      ...(data.buy_hold ? [{css: "buy-hold", label: "Buy & hold", ...decode(data.buy_hold)}] : [])]}],
      ["drawdown", document.getElementById("chart-drawdown"), {height: 150, zeroTop: true, unit: "%",
        series: [{css: "drawdown", label: "Drawdown", area: true, ...decode(data.drawdown)}]}]];
    data.prices.forEach((price, index) => {
      const trades = data.trades.filter((trade) => trade.symbol === price.symbol);
      const extent = trades.flatMap((trade) => [trade.entry_price, trade.exit_bar === null ? null : trade.exit_price]);
      charts.push(["price:" + price.symbol, document.getElementById("chart-price-" + index),
        {height: 260, series: [{css: "price", label: price.symbol, ...decode(price)}], trades, extent}]);
    });
    const drawAll = () => charts.map(([name, section, spec]) => { draw(section, spec); return name; });
    const [, equitySection, equitySpec] = charts[0];
    const scaleButton = equitySection.querySelector("button.scale");
    const setScale = (log) => {
      equitySpec.log = log;
      equitySection.dataset.scale = log ? "log" : "linear";
      scaleButton.setAttribute("aria-pressed", String(log));
    };
    setScale(window.location.hash === "#log");
    scaleButton.addEventListener("click", () => {
      try {
        setScale(!equitySpec.log);
        draw(equitySection, equitySpec);
      } catch (error) {
        fail(error);
      }
    });
    const drawn = drawAll();
    for (const [, section] of charts) {
      const box = section.querySelector("svg.plot").getBoundingClientRect();
      // Where each chart landed on the page, for screenshots of it.
      const edges = [box.left + window.scrollX, box.top + window.scrollY, box.width, box.height];
      section.dataset.box = edges.map(Math.round).join(",");
    }
    body.dataset.rendered = drawn.join(",");
    let pending = 0;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => { try { drawAll(); } catch (error) { fail(error); } }, 150);
    });
  } catch (error) {
    fail(error);
  }
})();
"""
