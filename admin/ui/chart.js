// chart.js: the dashboard's line charts over time, drawn as SVG (no library). Every text
// that reaches the chart goes through textContent; colours come from dashboard.css classes.

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 170;
const MARGIN = {left: 58, right: 14, top: 10, bottom: 24};

function svgEl(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

// niceStep is a round step (1, 2 or 5 times a power of ten) that cuts span into about n.
function niceStep(span, n) {
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

// Time steps for the x axis, in milliseconds.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map(s => s * 1000);

function pad(n) { return String(n).padStart(2, '0'); }

function clock(ms, seconds) {
  const d = new Date(ms);
  const hm = pad(d.getHours()) + ':' + pad(d.getMinutes());
  return seconds ? hm + ':' + pad(d.getSeconds()) : hm;
}

// LineChart draws series of values over the same times in a figure, with a legend that shows
// the latest values, or those under the pointer.
export class LineChart {
  // series: [{name}], format: value → text (axis and legend).
  constructor(figure, series, format) {
    this.figure = figure;
    this.series = series;
    this.format = format;
    this.svg = svgEl('svg', {class: 'plot', role: 'img', 'aria-label': figure.querySelector('figcaption').textContent}, figure);
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    this.when = document.createElement('span');
    this.when.className = 'when';
    this.legend.append(this.when);
    this.values = series.map((s, i) => {
      const key = document.createElement('span');
      key.className = 'key';
      const sw = document.createElement('span');
      sw.className = 'swatch s-' + i;
      const v = document.createElement('b');
      key.append(sw, s.name + ' ', v);
      this.legend.append(key);
      return v;
    });
    figure.append(this.legend);
    this.times = [];
    this.columns = series.map(() => []);
    this.svg.addEventListener('mousemove', ev => this.hover(ev));
    this.svg.addEventListener('mouseleave', () => this.hover(null));
  }

  // update sets the data: times in ms, one array of values (number or null) per series, and
  // the time domain [t0, t1] to show.
  update(times, columns, t0, t1) {
    this.times = times;
    this.columns = columns;
    this.t0 = t0;
    this.t1 = Math.max(t1, t0 + 1);
    this.draw();
  }

  x(t) { return MARGIN.left + (t - this.t0) / (this.t1 - this.t0) * (this.w - MARGIN.left - MARGIN.right); }

  y(v) { return MARGIN.top + (1 - v / this.top) * (HEIGHT - MARGIN.top - MARGIN.bottom); }

  draw() {
    const w = Math.max(240, Math.round(this.figure.clientWidth) || 560);
    this.w = w;
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${w} ${HEIGHT}`);
    svg.setAttribute('width', w);
    svg.setAttribute('height', HEIGHT);
    svg.setAttribute('data-points', this.times.length);

    let max = 0;
    for (const col of this.columns) for (const v of col) if (v != null && v > max) max = v;
    if (max <= 0) max = 1;
    const step = niceStep(max, 4);
    this.top = Math.ceil(max / step) * step;

    const grid = svgEl('g', {class: 'grid'}, svg);
    for (let v = 0; v <= this.top + step / 2; v += step) {
      const y = this.y(v);
      svgEl('line', {x1: MARGIN.left, x2: w - MARGIN.right, y1: y, y2: y}, grid);
      svgEl('text', {x: MARGIN.left - 6, y: y + 4, 'text-anchor': 'end'}, grid).textContent = this.format(v);
    }
    const span = this.t1 - this.t0;
    const tstep = TIME_STEPS.find(s => span / s <= 6) || 3600000;
    const axis = svgEl('g', {class: 'axis'}, svg);
    for (let t = Math.ceil(this.t0 / tstep) * tstep; t <= this.t1; t += tstep) {
      const x = this.x(t);
      svgEl('line', {x1: x, x2: x, y1: HEIGHT - MARGIN.bottom, y2: HEIGHT - MARGIN.bottom + 4}, axis);
      svgEl('text', {x, y: HEIGHT - 6, 'text-anchor': 'middle'}, axis).textContent = clock(t, tstep < 60000);
    }
    svgEl('line', {class: 'base', x1: MARGIN.left, x2: w - MARGIN.right, y1: this.y(0), y2: this.y(0)}, svg);

    this.columns.forEach((col, i) => {
      let d = '';
      let run = 0;
      const dots = [];
      for (let k = 0; k < this.times.length; k++) {
        const v = col[k];
        if (v == null) {
          if (run === 1) dots.push(k - 1);
          run = 0;
          continue;
        }
        d += (run === 0 ? 'M' : 'L') + this.x(this.times[k]).toFixed(1) + ' ' + this.y(v).toFixed(1) + ' ';
        run++;
      }
      if (run === 1) dots.push(this.times.length - 1);
      if (d) svgEl('path', {class: 'line s-' + i, d}, svg);
      for (const k of dots) svgEl('circle', {class: 'dot s-' + i, cx: this.x(this.times[k]), cy: this.y(col[k]), r: 2.5}, svg);
    });
    this.rule = svgEl('line', {class: 'rule', y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, x1: 0, x2: 0, visibility: 'hidden'}, svg);
    this.showValues(this.times.length - 1);
  }

  showValues(k) {
    if (k < 0 || k >= this.times.length) {
      this.when.textContent = 'no samples yet';
      for (const v of this.values) v.textContent = '–';
      return;
    }
    this.when.textContent = clock(this.times[k], true);
    this.values.forEach((v, i) => {
      const x = this.columns[i][k];
      v.textContent = x == null ? '–' : this.format(x);
    });
  }

  hover(ev) {
    if (!ev || !this.times.length) {
      if (this.rule) this.rule.setAttribute('visibility', 'hidden');
      this.showValues(this.times.length - 1);
      return;
    }
    const px = ev.offsetX * this.w / (this.svg.clientWidth || this.w);
    const t = this.t0 + (px - MARGIN.left) / (this.w - MARGIN.left - MARGIN.right) * (this.t1 - this.t0);
    let k = 0;
    for (let i = 1; i < this.times.length; i++) if (Math.abs(this.times[i] - t) < Math.abs(this.times[k] - t)) k = i;
    const x = this.x(this.times[k]);
    this.rule.setAttribute('x1', x);
    this.rule.setAttribute('x2', x);
    this.rule.setAttribute('visibility', 'visible');
    this.showValues(k);
  }
}
