// The report's timeline: draws the embedded data on a canvas, zooms and pans, and explains
// what is under the pointer. Everything shown comes from the history, so text only ever goes
// into the page through textContent, never as markup.
(() => {
  'use strict';
  const src = document.getElementById('timeline-data');
  const canvas = document.getElementById('timeline-canvas');
  if (!src || !canvas) return;
  const D = JSON.parse(src.textContent);
  const O = D.ops;
  const N = O.t.length;
  const start = new Float64Array(N);
  const end = new Float64Array(N);
  let acc = 0;
  for (let i = 0; i < N; i++) {
    acc += O.t[i];
    start[i] = acc / 1000;
    end[i] = O.d[i] < 0 ? -1 : (acc + O.d[i]) / 1000;
  }
  const byLane = D.lanes.map(() => []);
  const maxDur = D.lanes.map(() => 0);
  for (let i = 0; i < N; i++) {
    byLane[O.l[i]].push(i);
    maxDur[O.l[i]] = Math.max(maxDur[O.l[i]], end[i] < 0 ? 0 : end[i] - start[i]);
  }
  const COLORS = ['#2b7bba', '#d73027', '#f09a1c', '#8c8c8c'];
  const OUTCOME = ['ok', 'fail', 'info', 'never completed'];
  const ROLE = { leader: '#1a7f3c', follower: '#b9dcc4', candidate: '#f2c94c', 'pre-candidate': '#f7e3a1' };
  const AXIS = 22;
  const FAULTROW = 16;
  const MARKROW = D.marks.length ? 14 : 0;
  const NODEROW = 16;
  const LANE = Math.max(2, Math.min(14, Math.floor(12000 / Math.max(1, D.lanes.length))));
  const nodeTop = AXIS + FAULTROW + MARKROW;
  // During a rolling upgrade: one thin row per node with the version it ran.
  const VERROW = D.nodes.some((row) => row.vers.length) ? 12 : 0;
  const VERSION = ['#cfd8e3', '#7f9cc0', '#3f5f8a', '#b07aa1', '#e0b36b'];
  const verTop = nodeTop + D.nodes.length * NODEROW;
  const laneTop = verTop + D.nodes.length * VERROW + (D.nodes.length ? 6 : 0);
  const height = laneTop + D.lanes.length * LANE + 8;
  const X0 = D.left;
  const X1 = D.right;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = D.width + 'px';
  canvas.style.height = height + 'px';
  canvas.width = Math.round(D.width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  const tip = document.getElementById('timeline-tip');
  const detail = document.getElementById('timeline-detail');
  let v0 = 0;
  let v1 = D.end;
  let selected = -1;

  const x = (t) => X0 + ((t - v0) / (v1 - v0)) * (X1 - X0);
  const tAt = (px) => v0 + ((px - X0) / (X1 - X0)) * (v1 - v0);
  const fmt = (ms) => (D.synthetic ? 'event ' + Math.round(ms) : (ms / 1000).toFixed(ms < 10000 ? 6 : 3) + ' s');

  function niceStep(span) {
    const raw = span / 8;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  // First op of a lane whose start is at least t (binary search).
  function lowerBound(list, t) {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (start[list[mid]] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function draw() {
    ctx.clearRect(0, 0, D.width, height);
    ctx.font = '11px sans-serif';
    ctx.textBaseline = 'middle';
    // Axis.
    const step = niceStep(v1 - v0);
    ctx.fillStyle = '#333';
    ctx.strokeStyle = '#eee';
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const px = x(t);
      ctx.beginPath();
      ctx.moveTo(px, AXIS);
      ctx.lineTo(px, height);
      ctx.stroke();
      const label = D.synthetic ? String(Math.round(t)) : step >= 1000 ? (t / 1000).toFixed(0) + ' s' : step >= 1 ? (t / 1000).toFixed(3) + ' s' : (t / 1000).toFixed(6) + ' s';
      ctx.fillText(label, px + 2, 10);
    }
    // Faults: shaded across every row, labelled in their own row.
    for (const [s, e, label, color] of D.faults) {
      const a = Math.max(X0, x(s));
      const b = Math.min(X1, x(e === null ? D.end : e));
      if (b < X0 || a > X1) continue;
      ctx.globalAlpha = 0.13;
      ctx.fillStyle = color;
      ctx.fillRect(a, AXIS, Math.max(1, b - a), height - AXIS);
      ctx.globalAlpha = 1;
      ctx.fillRect(a, AXIS + 2, Math.max(1, b - a), 3);
      ctx.save();
      ctx.beginPath();
      ctx.rect(a, AXIS, Math.max(1, b - a), FAULTROW);
      ctx.clip();
      ctx.fillText(label, a + 2, AXIS + 11);
      ctx.restore();
    }
    // Nodes: role and term from /status samples.
    D.nodes.forEach((row, r) => {
      const y = nodeTop + r * NODEROW;
      ctx.fillStyle = '#333';
      ctx.fillText(row.node, 4, y + NODEROW / 2);
      for (const [s, e, role, term] of row.segs) {
        const a = Math.max(X0, x(s));
        const b = Math.min(X1, x(e));
        if (b < X0 || a > X1) continue;
        ctx.fillStyle = ROLE[role] || '#dddddd';
        ctx.fillRect(a, y + 2, Math.max(1, b - a), NODEROW - 4);
        if (b - a > 30 && term !== null) {
          ctx.fillStyle = role === 'leader' ? '#fff' : '#333';
          ctx.fillText((role === 'leader' ? 'leader ' : '') + 't' + term, a + 2, y + NODEROW / 2);
        }
      }
    });
    // Versions: one thin row per node, shaded and labelled by version.
    if (VERROW) {
      D.nodes.forEach((row, r) => {
        const y = verTop + r * VERROW;
        ctx.fillStyle = '#333';
        ctx.fillText(row.node + ' ver', 4, y + VERROW / 2);
        for (const [s, e, version, c] of row.vers) {
          const a = Math.max(X0, x(s));
          const b = Math.min(X1, x(e));
          if (b < X0 || a > X1) continue;
          ctx.fillStyle = VERSION[c % VERSION.length];
          ctx.fillRect(a, y + 1, Math.max(1, b - a), VERROW - 2);
          if (b - a > 40) {
            ctx.fillStyle = c % VERSION.length >= 2 ? '#fff' : '#333';
            ctx.save();
            ctx.beginPath();
            ctx.rect(a, y, b - a, VERROW);
            ctx.clip();
            ctx.fillText(version, a + 2, y + VERROW / 2);
            ctx.restore();
          }
        }
      });
    }
    // Two leaders at once: bands over the node rows (red: the same term, a violation).
    if (D.nodes.length) {
      for (const [s, e, label, bad] of D.leaders) {
        const a = Math.max(X0, x(s));
        const b = Math.min(X1, Math.max(x(e), x(s) + 2));
        if (b < X0 || a > X1) continue;
        ctx.globalAlpha = bad ? 0.45 : 0.25;
        ctx.fillStyle = bad ? '#d62728' : '#ff7f0e';
        ctx.fillRect(a, nodeTop, Math.max(2, b - a), D.nodes.length * NODEROW);
        ctx.globalAlpha = 1;
      }
    }
    // Rows of operations.
    ctx.fillStyle = '#333';
    if (LANE >= 8) D.lanes.forEach((label, l) => ctx.fillText(label, 4, laneTop + l * LANE + LANE / 2));
    if (D.density) drawDensity();
    ctx.save();
    ctx.beginPath();
    ctx.rect(X0, laneTop, X1 - X0, height - laneTop);
    ctx.clip();
    for (let l = 0; l < byLane.length; l++) {
      const list = byLane[l];
      const y = laneTop + l * LANE;
      for (let j = lowerBound(list, v0 - maxDur[l]); j < list.length; j++) {
        const i = list[j];
        if (start[i] > v1) break;
        const a = x(start[i]);
        const w = end[i] < 0 ? 6 : Math.max(1, x(end[i]) - a);
        ctx.fillStyle = COLORS[O.o[i]];
        ctx.fillRect(a, y + 1, w, LANE - 2);
        if (O.c[i]) {
          ctx.strokeStyle = O.c[i] === 2 ? '#d73027' : '#222';
          ctx.lineWidth = O.c[i] === 2 ? 2 : 1;
          ctx.strokeRect(a, y + 1, w, LANE - 2);
          ctx.lineWidth = 1;
        }
        if (i === selected) {
          ctx.strokeStyle = '#000';
          ctx.lineWidth = 2;
          ctx.strokeRect(a - 1, y, w + 2, LANE);
          ctx.lineWidth = 1;
        }
      }
    }
    ctx.restore();
    // Failures: a line at each culprit, labelled where labels do not collide.
    let labelEnd = -Infinity;
    ctx.strokeStyle = 'rgba(20,20,20,0.55)';
    ctx.fillStyle = '#111';
    for (const [s, , label] of D.marks) {
      const px = x(s);
      if (px < X0 || px > X1) continue;
      ctx.beginPath();
      ctx.moveTo(px, AXIS + FAULTROW);
      ctx.lineTo(px, height);
      ctx.stroke();
      if (px > labelEnd) {
        ctx.fillText(label, px + 2, AXIS + FAULTROW + MARKROW / 2);
        labelEnd = px + ctx.measureText(label).width + 6;
      }
    }
    drawBands();
  }

  function drawDensity() {
    const bin = D.density.bin;
    let max = 1;
    for (const cells of D.density.lanes) for (let j = 0; j < cells.length; j += 4) max = Math.max(max, cells[j + 1] + cells[j + 2] + cells[j + 3]);
    D.density.lanes.forEach((cells, l) => {
      const y = laneTop + l * LANE;
      for (let j = 0; j < cells.length; j += 4) {
        const a = x(cells[j] * bin);
        const b = x((cells[j] + 1) * bin);
        if (b < X0 || a > X1) continue;
        const [ok, fail, info] = [cells[j + 1], cells[j + 2], cells[j + 3]];
        const k = fail >= ok && fail >= info ? 1 : info > ok ? 2 : 0;
        ctx.globalAlpha = 0.15 + (0.5 * (ok + fail + info)) / max;
        ctx.fillStyle = COLORS[k];
        ctx.fillRect(Math.max(X0, a), y + 1, Math.max(1, Math.min(X1, b) - Math.max(X0, a)), LANE - 2);
      }
    });
    ctx.globalAlpha = 1;
  }

  // Marks the visible span on the plots, which share the timeline's time axis.
  function drawBands() {
    const zoomed = v0 > 0 || v1 < D.end;
    for (const band of document.querySelectorAll('.zoomband')) {
      band.style.display = zoomed ? 'block' : 'none';
      band.style.left = X0 + (v0 / D.end) * (X1 - X0) + 'px';
      band.style.width = Math.max(1, ((v1 - v0) / D.end) * (X1 - X0)) + 'px';
    }
  }

  function zoomTo(a, b) {
    const span = Math.max(0.001, b - a);
    v0 = Math.max(0, a);
    v1 = Math.min(D.end, v0 + span);
    if (v1 - v0 < span) v0 = Math.max(0, v1 - span);
    draw();
  }

  // What is at a point of the canvas: an op, a node's status, or a fault.
  function hit(px, py) {
    const t = tAt(px);
    if (py >= laneTop) {
      const l = Math.floor((py - laneTop) / LANE);
      const list = byLane[l];
      if (!list) return null;
      const stop = lowerBound(list, t - maxDur[l]) - 1;
      for (let j = lowerBound(list, t + 1e-9) - 1; j >= 0 && j >= stop; j--) {
        const i = list[j];
        const e = end[i] < 0 ? tAt(x(start[i]) + 6) : end[i];
        if (start[i] <= t && t <= Math.max(e, tAt(x(start[i]) + 1))) return { op: i };
      }
      return null;
    }
    if (VERROW && py >= verTop) {
      const row = D.nodes[Math.floor((py - verTop) / VERROW)];
      if (!row) return null;
      for (const v of row.vers) if (v[0] <= t && t <= v[1]) return { version: v, vnode: row.node };
      return null;
    }
    if (py >= nodeTop) {
      const row = D.nodes[Math.floor((py - nodeTop) / NODEROW)];
      if (!row) return null;
      for (const l of D.leaders) if (l[0] <= t && t <= Math.max(l[1], tAt(x(l[0]) + 2))) return { leaders: l };
      for (const seg of row.segs) if (seg[0] <= t && t <= seg[1]) return { node: row.node, seg };
      return null;
    }
    for (const f of D.faults) if (f[0] <= t && t <= (f[1] === null ? D.end : f[1])) return { fault: f };
    return null;
  }

  function opLines(i) {
    const lines = [];
    const key = O.k[i] >= 0 ? ' ' + O.ks[O.k[i]] : '';
    lines.push('process ' + O.p[i] + ': ' + O.fs[O.f[i]] + key + (O.v[i] ? ' ' + O.v[i] : ''));
    const r = O.r[i] ? (O.o[i] === 0 ? ' → ' : ': ') + O.r[i] : '';
    lines.push(OUTCOME[O.o[i]] + r + (O.n[i] >= 0 ? ' on ' + O.ns[O.n[i]] : ''));
    lines.push(fmt(start[i]) + (end[i] < 0 ? ', never completed' : ' – ' + fmt(end[i]) + ' (' + (end[i] - start[i]).toFixed(3) + ' ms)'));
    lines.push('event index ' + O.i[i] + (O.c[i] === 2 ? ' — cannot be linearized' : O.c[i] === 1 ? ' — in a failure window' : ''));
    return lines;
  }

  function describe(h) {
    if (h.op !== undefined) return opLines(h.op);
    if (h.node !== undefined) {
      const [s, e, role, term, leader] = h.seg;
      return [h.node + ': ' + (role || 'no answer') + (term !== null ? ', term ' + term : '') + (leader ? ', leader ' + leader : ''), fmt(s) + ' – ' + fmt(e)];
    }
    if (h.version !== undefined) {
      const [s, e, version] = h.version;
      return [h.vnode + ' ran ' + version, fmt(s) + ' – ' + fmt(e)];
    }
    if (h.leaders !== undefined) {
      const [s, e, label] = h.leaders;
      return [label, fmt(s) + ' – ' + fmt(e)];
    }
    const [s, e, label] = h.fault;
    return ['fault ' + label, fmt(s) + ' – ' + (e === null ? 'end (never healed)' : fmt(e))];
  }

  function setLines(el, lines) {
    el.replaceChildren();
    for (const line of lines) {
      const div = document.createElement('div');
      div.textContent = line;
      el.appendChild(div);
    }
  }

  function select(i, zoom) {
    selected = i;
    if (i >= 0 && detail) {
      setLines(detail, opLines(i));
      detail.hidden = false;
      if (zoom) {
        const e = end[i] < 0 ? start[i] + 1 : end[i];
        const pad = Math.max(5, (e - start[i]) * 3);
        zoomTo(start[i] - pad, e + pad);
        return;
      }
    }
    draw();
  }

  let drag = null;
  canvas.addEventListener('mousedown', (ev) => {
    drag = { x: ev.offsetX, v0, v1, moved: false };
  });
  window.addEventListener('mouseup', (ev) => {
    if (drag && !drag.moved && ev.target === canvas) {
      const h = hit(ev.offsetX, ev.offsetY);
      if (h && h.op !== undefined) {
        select(h.op, false);
        history.replaceState(null, '', '#op=' + O.i[h.op]);
      }
    }
    drag = null;
  });
  canvas.addEventListener('mousemove', (ev) => {
    if (drag) {
      const dt = ((ev.offsetX - drag.x) / (X1 - X0)) * (drag.v1 - drag.v0);
      if (Math.abs(ev.offsetX - drag.x) > 2) drag.moved = true;
      const span = drag.v1 - drag.v0;
      v0 = Math.min(Math.max(0, drag.v0 - dt), D.end - span);
      v1 = v0 + span;
      draw();
      return;
    }
    const h = hit(ev.offsetX, ev.offsetY);
    if (!h) {
      tip.hidden = true;
      return;
    }
    setLines(tip, describe(h));
    tip.hidden = false;
    tip.style.left = Math.min(ev.offsetX + 14, D.width - 320) + 'px';
    tip.style.top = ev.offsetY + 14 + 'px';
  });
  canvas.addEventListener('mouseleave', () => {
    tip.hidden = true;
  });
  canvas.addEventListener(
    'wheel',
    (ev) => {
      ev.preventDefault();
      const t = tAt(ev.offsetX);
      const f = Math.exp(ev.deltaY * 0.002);
      const span = Math.min(D.end, Math.max(0.001, (v1 - v0) * f));
      const r = (t - v0) / (v1 - v0);
      zoomTo(t - r * span, t - r * span + span);
    },
    { passive: false },
  );
  canvas.addEventListener('dblclick', () => zoomTo(0, D.end));
  for (const b of document.querySelectorAll('[data-timeline]')) {
    b.addEventListener('click', () => {
      const mid = (v0 + v1) / 2;
      const span = v1 - v0;
      if (b.dataset.timeline === 'in') zoomTo(mid - span / 4, mid + span / 4);
      else if (b.dataset.timeline === 'out') zoomTo(mid - span, mid + span);
      else zoomTo(0, D.end);
    });
  }
  for (const a of document.querySelectorAll('[data-zoom]')) {
    a.addEventListener('click', () => {
      const m = D.marks[Number(a.dataset.zoom)];
      if (m) zoomTo(m[3], m[4]);
    });
  }
  const want = /op=(\d+)/.exec(location.hash);
  const at = want ? O.i.indexOf(Number(want[1])) : -1;
  if (at >= 0) select(at, true);
  else draw();
  document.body.dataset.timeline = 'drawn';
})();
