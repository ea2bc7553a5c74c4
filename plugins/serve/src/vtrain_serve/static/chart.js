// A hand-written SVG line chart: one function, no dependency. Enough for training curves
// (thousands of points are thinned to about one per pixel before drawing).
const COLORS = ["#245ea8", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4ea3", "#5c6b73", "#ef476f", "#118ab2"];

function lineChart(title, series, width = 460, height = 220) {
  const pad = { l: 54, r: 8, t: 6, b: 22 };
  const pts = series.flatMap(s => s.points).filter(p => p[1] !== null && isFinite(p[1]));
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.title = title;
  if (!pts.length) { box.innerHTML = `<div class="title">${title}</div><div>no data yet</div>`; return box; }
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = x => pad.l + (x - x0) / (x1 - x0) * (width - pad.l - pad.r);
  const sy = y => height - pad.b - (y - y0) / (y1 - y0) * (height - pad.t - pad.b);
  const fmt = v => Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : +v.toPrecision(3);
  let svg = `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">`;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    svg += `<line x1="${pad.l}" x2="${width - pad.r}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/>`;
    svg += `<text x="${pad.l - 4}" y="${sy(y) + 4}" font-size="10" text-anchor="end">${fmt(y)}</text>`;
  }
  svg += `<text x="${pad.l}" y="${height - 6}" font-size="10">${x0}</text>`;
  svg += `<text x="${width - pad.r}" y="${height - 6}" font-size="10" text-anchor="end">step ${x1}</text>`;
  series.forEach((s, i) => {
    const good = s.points.filter(p => p[1] !== null && isFinite(p[1]));
    const stride = Math.max(1, Math.floor(good.length / (width - pad.l)));
    const kept = good.filter((p, j) => j % stride === 0 || j === good.length - 1);
    const d = kept.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)} ${sy(p[1]).toFixed(1)}`).join("");
    s.color = s.color || COLORS[i % COLORS.length];
    svg += `<path class="series" data-name="${s.name}" data-points="${good.length}" d="${d}" fill="none" ` +
           `stroke="${s.color}" stroke-width="${s.width || 1.5}" opacity="${s.opacity || 1}"/>`;
  });
  svg += "</svg>";
  const legend = series.map(s => `<span style="color:${s.color}">&#9632; ${s.name}</span>`).join("");
  box.innerHTML = `<div class="title">${title}</div>${svg}<div class="legend">${legend}</div>`;
  return box;
}

function smooth(points, weight = 0.9) {
  let last = null;
  return points.map(([x, y]) => {
    if (y === null) return [x, null];
    last = last === null ? y : last * weight + y * (1 - weight);
    return [x, last];
  });
}
