// The balance chart (uPlot, loaded on first use). Balances are decimal strings; they
// become numbers here only to be plotted: the readout under the chart shows the
// original strings.

let uPlotPromise = null;
const loadUPlot = () => (uPlotPromise ||= import('../vendor/uplot/uPlot.esm.js').then((m) => m.default));

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export class BalanceChart {
  /**
   * @param {HTMLElement} el container
   * @param {{onPick: (date: Date, final: boolean) => void, onHover: (point|null) => void}} opts
   */
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.u = null;
    this.points = [];
    this.marker = null; // ms
    this.dragging = false;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(el);
    this.onTheme = () => this.rebuild();
    document.addEventListener('themechange', this.onTheme);
  }

  /** points: [{t: ms, balance: "12.50", label}] in time order; endMs: right edge. */
  async setData(points, endMs) {
    this.points = points;
    this.endMs = endMs;
    const uPlot = await loadUPlot();
    this.uPlot = uPlot;
    if (!this.u) this.build();
    else this.u.setData(this.data(), true);
    this.drawRange();
  }

  data() {
    const xs = this.points.map((p) => p.t / 1000);
    const ys = this.points.map((p) => parseFloat(p.balance)); // for plotting only
    if (this.points.length) {
      xs.push(this.endMs / 1000);
      ys.push(ys[ys.length - 1]);
    }
    return [xs, ys];
  }

  drawRange() {
    if (!this.u || !this.points.length) return;
    const first = this.points[0].t / 1000;
    const last = this.endMs / 1000;
    const span = Math.max(last - first, 1);
    this.u.setScale('x', { min: first - span * 0.04, max: last + span * 0.02 });
  }

  rebuild() {
    if (!this.u) return;
    this.u.destroy();
    this.u = null;
    this.build();
    this.drawRange();
  }

  build() {
    const uPlot = this.uPlot;
    const text = cssVar('--muted') || '#555';
    const grid = cssVar('--grid') || 'rgba(0,0,0,.08)';
    const line = cssVar('--accent') || '#2457d6';
    const fill = cssVar('--chart-fill') || 'rgba(36,87,214,.12)';
    const markerColor = cssVar('--marker') || '#b35c00';
    const font = `12px ${cssVar('--font-sans') || 'sans-serif'}`;
    const self = this;
    const opts = {
      width: Math.max(this.el.clientWidth, 200),
      height: this.height(),
      legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false }, y: false, points: { size: 8, fill: line } },
      scales: {
        x: { time: true },
        y: {
          range: (u, min, max) => {
            const lo = Math.min(0, min);
            const hi = Math.max(0, max);
            const pad = (hi - lo) * 0.08 || 1;
            return [lo === 0 ? 0 : lo - pad, hi + pad];
          },
        },
      },
      axes: [
        { stroke: text, font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
        { stroke: text, font, size: 64, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
      ],
      series: [
        {},
        {
          label: 'Balance', stroke: line, width: 2, fill,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: (u) => this.points.length < 60, size: 6, fill: line, stroke: line },
        },
      ],
      hooks: {
        draw: [(u) => self.drawMarker(u, markerColor)],
        setCursor: [(u) => {
          const i = u.cursor.idx;
          self.opts.onHover(i === null || i === undefined ? null : (self.points[i] || self.points[self.points.length - 1] || null));
        }],
        ready: [(u) => self.wire(u)],
      },
    };
    this.u = new uPlot(opts, this.data(), this.el);
  }

  height() {
    return window.matchMedia('(max-width: 640px)').matches ? 200 : 260;
  }

  fit() {
    if (!this.u) return;
    const w = this.el.clientWidth;
    if (w > 0 && (w !== this.u.width || this.height() !== this.u.height)) this.u.setSize({ width: w, height: this.height() });
  }

  /** Click or drag on the plot picks an instant. */
  wire(u) {
    const over = u.over;
    const pick = (e, final) => {
      const rect = over.getBoundingClientRect();
      const x = Math.min(Math.max(e.clientX - rect.left, 0), rect.width);
      const t = u.posToVal(x, 'x') * 1000;
      if (!Number.isFinite(t)) return;
      this.setMarker(t);
      this.opts.onPick(new Date(t), final);
    };
    over.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      this.dragging = true;
      over.setPointerCapture(e.pointerId);
      pick(e, false);
    });
    over.addEventListener('pointermove', (e) => { if (this.dragging) pick(e, false); });
    const end = (e) => {
      if (!this.dragging) return;
      this.dragging = false;
      pick(e, true);
    };
    over.addEventListener('pointerup', end);
    over.addEventListener('pointercancel', () => { this.dragging = false; });
  }

  setMarker(ms) {
    this.marker = ms;
    if (this.u) this.u.redraw(false, false);
  }

  drawMarker(u, color) {
    if (this.marker === null) return;
    const x = Math.round(u.valToPos(this.marker / 1000, 'x', true));
    const { top, height, left, width } = u.bbox;
    if (x < left || x > left + width) return;
    const ctx = u.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * dpr;
    ctx.setLineDash([5 * dpr, 4 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.arc(x, top + 4 * dpr, 4 * dpr, 0, Math.PI * 2);
    ctx.fill();
    ctx.restore();
  }

  destroy() {
    this.resize.disconnect();
    document.removeEventListener('themechange', this.onTheme);
    if (this.u) this.u.destroy();
    this.u = null;
  }
}
