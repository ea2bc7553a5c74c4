// The dashboard page: hash routes #/ (runs), #/run/<id>, #/compare/<id>|<id>..., #/new (the config form).
const main = document.getElementById("main");
const FIXED = new Set(["step", "loss", "lr", "grad_norm", "samples_per_second", "step_seconds", "epoch"]);
let timer = null, page = 0;
// poll fn every ms (or what it returns) until the route changes; a failed poll (server restarting) is retried
const every = (ms, fn) => {
  const mine = page;
  const tick = async () => {
    let wait = ms;
    try { wait = (await fn()) || ms; } catch (e) { wait = 3000; }
    if (mine === page) timer = setTimeout(tick, wait);
  };
  timer = setTimeout(tick, ms);
};

const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = v => v === null || v === undefined ? "" : typeof v === "number" ? +v.toPrecision(4) : v;

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Vtrain": "1" } };
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) { const e = new Error(data.error || res.statusText); e.problems = data.problems || []; throw e; }
  return data;
}
const fileUrl = (id, path) => `/api/file?id=${encodeURIComponent(id)}&path=${encodeURIComponent(path)}`;

function route() {
  clearTimeout(timer);
  page += 1;
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  if (hash.startsWith("/run/")) return showRun(hash.slice(5));
  if (hash.startsWith("/compare/")) return showCompare(hash.slice(9).split("|"));
  if (hash === "/new") return showForm();
  return showRuns();
}
window.addEventListener("hashchange", route);

// -- runs list -------------------------------------------------------------------------------
async function showRuns() {
  const draw = async () => {
    const { runs, roots } = await api("/api/runs");
    const checked = new Set([...main.querySelectorAll("input.pick:checked")].map(c => c.value));
    main.innerHTML = `<h2>Runs</h2><p>under ${roots.map(esc).join(", ")}</p>
      <table id="runs"><tr><th></th><th>run</th><th>family</th><th>status</th><th>step</th><th>loss</th>
      <th>samples/s</th><th>started</th><th>ended</th></tr>
      ${runs.map(r => `<tr data-id="${esc(r.id)}"><td><input type="checkbox" class="pick" value="${esc(r.id)}"
        ${checked.has(r.id) ? "checked" : ""}></td><td><a href="#/run/${encodeURIComponent(r.id)}">${esc(r.name)}</a></td>
        <td>${esc(r.family)}</td><td class="status ${r.status}">${r.status}</td><td>${r.step}${r.total ? " / " + r.total : ""}</td>
        <td>${num(r.loss)}</td><td>${num(r.samples_per_second)}</td><td>${esc(r.started)}</td><td>${esc(r.ended)}</td></tr>`).join("")}
      </table><p><button id="compare">compare selected</button></p>`;
    document.getElementById("compare").onclick = () => {
      const ids = [...main.querySelectorAll("input.pick:checked")].map(c => c.value);
      if (ids.length >= 2) location.hash = "#/compare/" + encodeURIComponent(ids.join("|"));
    };
  };
  await draw();
  every(3000, draw);
}

// -- one run ---------------------------------------------------------------------------------
function curves(rows) {
  const col = key => rows.filter(r => key in r).map(r => [r.step, r[key]]);
  const terms = [...new Set(rows.flatMap(Object.keys))].filter(k => !FIXED.has(k));
  const loss = col("loss");
  return [
    lineChart("loss", [{ name: "raw", points: loss, opacity: 0.35, width: 1 }, { name: "smoothed", points: smooth(loss), width: 2 }]),
    lineChart("loss terms and metrics", terms.map(k => ({ name: k, points: col(k) }))),
    lineChart("learning rate", [{ name: "lr", points: col("lr") }]),
    lineChart("grad norm", [{ name: "grad_norm", points: col("grad_norm") }]),
    lineChart("samples/s", [{ name: "samples/s", points: col("samples_per_second") }]),
  ];
}

function mediaCell(id, m) {
  if (!m) return "<td></td>";
  const src = fileUrl(id, m.path);
  if (m.kind === "video") return `<td><video src="${src}" controls loop preload="metadata" data-step="${m.step}"></video></td>`;
  if (m.kind === "image") return `<td><img src="${src}" alt="${esc(m.name)}"></td>`;
  if (m.kind === "audio") return `<td><audio src="${src}" controls></audio></td>`;
  return `<td>${esc(m.name)} (latents, no media)</td>`;
}

function mediaGrid(id, media) {
  const steps = [...new Set(media.map(m => m.step))], names = [...new Set(media.map(m => m.name))];
  if (!media.length) return "<p>no validation yet</p>";
  return `<table class="grid"><tr><th>step</th>${names.map(n => `<th>${esc(n)}</th>`).join("")}</tr>${steps.map(s =>
    `<tr><td>${s}</td>${names.map(n => mediaCell(id, media.find(m => m.step === s && m.name === n))).join("")}</tr>`).join("")}</table>`;
}

async function showRun(id) {
  let rows = [], offset = 0, shownMedia = "";
  main.innerHTML = `<h2 id="title"></h2><div id="head"></div><div class="charts" id="charts"></div>
    <h3>Validation</h3><div id="media"></div><h3>Log</h3><pre id="log"></pre><h3>Start-up summary</h3><pre id="summary"></pre>
    <h3>Checkpoints</h3><div id="checkpoints"></div><h3>Config</h3><div id="config"></div>`;
  const $ = s => document.getElementById(s);
  const refresh = async () => {
    const run = await api(`/api/run?id=${encodeURIComponent(id)}`);
    const more = await api(`/api/metrics?id=${encodeURIComponent(id)}&offset=${offset}`);
    const grew = more.rows.length > 0 || more.offset < offset || !offset;
    if (more.offset < offset) rows = [];
    rows = rows.concat(more.rows); offset = more.offset;
    $("title").textContent = run.name;
    $("head").innerHTML = `<p><span id="status" class="status ${run.status}">${run.status}</span> · ${esc(run.family)} ·
      step <span id="step">${run.step}</span>${run.total ? " / " + run.total : ""} · loss ${num(run.loss)} · ${num(run.samples_per_second)} samples/s
      · ${esc(run.path)}</p><p>${run.stoppable ? '<button id="stop">stop (Ctrl-C)</button>' : ""}
      ${run.controllable && !run.stoppable ? '<button id="resume">resume from latest</button>' : ""}</p><ul id="problems" class="problems"></ul>`;
    if ($("stop")) $("stop").onclick = () => act("/api/stop", id);
    if ($("resume")) $("resume").onclick = () => act("/api/resume", id);
    if (grew) $("charts").replaceChildren(...curves(rows));
    const key = JSON.stringify(run.validation);
    if (key !== shownMedia) { $("media").innerHTML = mediaGrid(id, run.validation); shownMedia = key; }
    $("log").textContent = run.log.join("\n") || "(no log: only runs started from this page keep one)";
    $("summary").textContent = run.summary.join("\n") || "(not available)";
    $("checkpoints").innerHTML = run.checkpoints.length ? `<ul>${run.checkpoints.map(c => `<li>${esc(c.name)} (${esc(c.time)})</li>`).join("")}</ul>` : "none";
    $("config").innerHTML = `<table id="config-table"><tr><th>key</th><th>value</th><th>from</th></tr>${run.config.map(c =>
      `<tr><td>${esc(c.key)}</td><td>${esc(JSON.stringify(c.value))}</td><td>${esc(c.source)}</td></tr>`).join("")}</table>`;
    return run.status === "running" ? 1000 : 4000;  // a finished run is looked at less often
  };
  await refresh();
  every(1000, refresh);
}

async function act(path, id) {
  try {
    const res = await api(path, { id });
    if (res.id && res.id !== id) location.hash = "#/run/" + encodeURIComponent(res.id);
  } catch (e) { showProblems(e); }
}

function showProblems(e) {
  const list = document.getElementById("problems");
  list.innerHTML = (e.problems.length ? e.problems : [{ where: "", message: e.message }]).map(p =>
    `<li><b>${esc(p.where)}</b> ${esc(p.message)}${p.fix ? `<br><i>fix: ${esc(p.fix)}</i>` : ""}</li>`).join("");
}

// -- compare ---------------------------------------------------------------------------------
async function showCompare(ids) {
  const runs = await Promise.all(ids.map(id => api(`/api/run?id=${encodeURIComponent(id)}`)));
  const metrics = await Promise.all(ids.map(id => api(`/api/metrics?id=${encodeURIComponent(id)}`)));
  const steps = [...new Set(runs.flatMap(r => r.validation.map(m => m.step)))].sort((a, b) => a - b);
  main.innerHTML = `<h2>Compare ${runs.length} runs</h2><p>metric <select id="metric">${["loss", "lr", "grad_norm", "samples_per_second"]
    .map(k => `<option>${k}</option>`).join("")}</select> validation step <select id="vstep">${steps.map(s => `<option>${s}</option>`).join("")}</select></p>
    <div id="chart"></div><div id="side"></div>`;
  const draw = () => {
    const key = document.getElementById("metric").value, step = +document.getElementById("vstep").value;
    const series = runs.map((r, i) => {
      const pts = metrics[i].rows.filter(row => key in row).map(row => [row.step, row[key]]);
      return { name: r.name, points: key === "loss" ? smooth(pts) : pts, width: 2 };
    });
    document.getElementById("chart").replaceChildren(lineChart(key + (key === "loss" ? " (smoothed)" : ""), series, 760, 280));
    const names = [...new Set(runs.flatMap(r => r.validation.filter(m => m.step === step).map(m => m.name)))];
    document.getElementById("side").innerHTML = `<table class="grid" id="side-table"><tr><th></th>${runs.map(r => `<th>${esc(r.name)}</th>`).join("")}</tr>
      ${names.map(n => `<tr><td>${esc(n)}</td>${runs.map((r, i) => mediaCell(ids[i], r.validation.find(m => m.step === step && m.name === n))).join("")}</tr>`).join("")}</table>`;
  };
  document.getElementById("metric").onchange = draw;
  document.getElementById("vstep").onchange = draw;
  draw();
}

// -- the config form (generated from the options registry) ----------------------------------
function field(o) {
  const attrs = `name="${esc(o.name)}" data-kind="${o.kind}"`;
  let input;
  if (o.kind === "bool") input = `<select ${attrs}><option value="">default (${o.default})</option><option>true</option><option>false</option></select>`;
  else if (o.choices) input = `<select ${attrs}><option value="">default (${esc(o.default)})</option>${o.choices.map(c => `<option>${esc(c)}</option>`).join("")}</select>`;
  else if (o.kind === "int" || o.kind === "float") input = `<input type="number" ${attrs} step="${o.kind === "int" ? 1 : "any"}"
      ${o.minimum !== null ? `min="${o.minimum}"` : ""} ${o.maximum !== null ? `max="${o.maximum}"` : ""} placeholder="${esc(o.default)}">`;
  else input = `<input ${attrs} placeholder="${esc(o.default === null ? "" : typeof o.default === "object" ? JSON.stringify(o.default) : o.default)}">`;
  const limits = [o.minimum !== null ? `≥ ${o.minimum}` : "", o.maximum !== null ? `≤ ${o.maximum}` : ""].filter(Boolean).join(", ");
  return `<label data-families="${esc((o.families || []).join(","))}"><span>${esc(o.name)} <span class="owner">${esc(o.owner)}</span></span>${input}
    <span class="help">${esc(o.help)} ${limits ? `(${limits})` : ""} ${o.status === "planned" ? "(planned)" : ""}</span></label>`;
}

async function showForm() {
  const { options } = await api("/api/options");
  const groups = {};
  options.forEach(o => (groups[o.category] = groups[o.category] || []).push(o));
  main.innerHTML = `<h2>New run</h2><div class="form">
    <p>Config file (JSON, optional): <input type="file" id="file" accept=".json"> — values set below override it.</p>
    <textarea id="base" rows="4" placeholder="{ }"></textarea>
    <p>filter <input id="filter" placeholder="key or text"></p>
    ${Object.entries(groups).map(([cat, opts]) => `<fieldset><legend>${esc(cat)}</legend>${opts.map(field).join("")}</fieldset>`).join("")}
    </div><p><button id="validate">validate</button><button id="start">start</button></p><ul id="problems" class="problems"></ul>`;
  document.getElementById("file").onchange = async ev => { document.getElementById("base").value = await ev.target.files[0].text(); };
  document.getElementById("filter").oninput = ev => {
    const q = ev.target.value.toLowerCase();
    main.querySelectorAll(".form label").forEach(l => { l.style.display = l.textContent.toLowerCase().includes(q) ? "" : "none"; });
  };
  const collect = () => {
    const text = document.getElementById("base").value.trim();
    const config = text ? JSON.parse(text) : {};
    main.querySelectorAll(".form [name]").forEach(el => {
      if (el.value === "") return;
      const kind = el.dataset.kind;
      config[el.name] = kind === "bool" ? el.value === "true" : kind === "int" || kind === "float" ? Number(el.value) : el.value;
    });
    return config;
  };
  const run = async start => {
    const list = document.getElementById("problems");
    list.innerHTML = "";
    try {
      const config = collect();
      if (!start) {
        const res = await api("/api/validate", { config });
        if (!res.ok) return showProblems({ problems: res.problems });
        list.innerHTML = `<li class="ok" style="color:#0b7a33">valid: ${res.config.length} keys resolved</li>`;
        return;
      }
      const res = await api("/api/start", { config });
      location.hash = "#/run/" + encodeURIComponent(res.id);
    } catch (e) { showProblems({ problems: e.problems || [], message: e.message }); }
  };
  document.getElementById("validate").onclick = () => run(false);
  document.getElementById("start").onclick = () => run(true);
}

route();
