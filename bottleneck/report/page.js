(function () {
  function mark() {
    var id = decodeURIComponent(location.hash.slice(1));
    document.querySelectorAll('td.cell a.active').forEach(function (a) { a.classList.remove('active'); });
    if (id.indexOf('cell-') === 0) {
      var a = document.querySelector('td.cell a[data-cell="' + id.slice(5) + '"]');
      if (a) { a.classList.add('active'); }
    }
  }
  window.addEventListener('hashchange', mark);
  mark();
})();

// Heatmaps: each figure carries two small grids (bytes, base64); each becomes a canvas laid over the thumbnail,
// scaled up smoothly by the browser. The header's switch shows one kind or none (page.css: body[data-heat]).
(function () {
  function colour(v) {  // 0..1 -> a warm ramp, transparent where there is no evidence
    var r = Math.min(255, 510 * v), g = Math.max(0, Math.min(255, 510 * v - 160)), b = Math.max(0, 120 - 240 * v);
    return [r, g, b, Math.round(200 * Math.sqrt(v))];
  }
  function draw(figure, kind) {
    var size = figure.dataset.heatSize.split(',').map(Number), bytes = atob(figure.dataset['heat' + kind]);
    var canvas = document.createElement('canvas');
    canvas.width = size[1];
    canvas.height = size[0];
    canvas.className = 'heat heat-' + kind.toLowerCase();
    var context = canvas.getContext('2d'), image = context.createImageData(size[1], size[0]);
    for (var i = 0; i < bytes.length; i++) {
      var c = colour(bytes.charCodeAt(i) / 255);
      image.data.set(c, 4 * i);
    }
    context.putImageData(image, 0, 0);
    figure.querySelector('.frame').appendChild(canvas);
  }
  document.querySelectorAll('figure[data-heat-size]').forEach(function (figure) {
    draw(figure, 'Taken');
    draw(figure, 'Folder');
  });
  document.querySelectorAll('.heat-switch input[name="heat"]').forEach(function (input) {
    input.addEventListener('change', function () { document.body.dataset.heat = input.value; });
  });
})();

// The data map: points from the JSON island, drawn as an SVG scatter; the thumbnail of the point under the
// pointer comes from one sprite image; a click opens the image itself.
(function () {
  var island = document.getElementById('data-map-points'), root = document.getElementById('data-map');
  if (!island || !root) { return; }
  var data = JSON.parse(island.textContent);
  var sheet = JSON.parse(document.getElementById('data-map-sprite').textContent);
  var NS = 'http://www.w3.org/2000/svg', PAD = 20, FLAGS = [[1, 'mis', 'misclassified'],
    [2, 'le', 'suspected label error'], [4, 'dup', 'duplicate']];
  // No red among the classes: a red ring marks a suspected label error.
  var PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#65a30d',
    '#4b5563', '#92400e'];
  function classColour(c) {
    var hue = Math.round((c * 137.508) % 360);  // beyond the palette: hues spread by the golden angle, red left out
    return c < PALETTE.length ? PALETTE[c] : 'hsl(' + (hue < 20 || hue > 340 ? hue + 40 : hue) + ',65%,45%)';
  }
  var svg = root.querySelector('svg'), tip = root.querySelector('.map-tip');
  var style = document.createElement('style');  // the sprite once, not in every tip
  style.textContent = '#data-map .tile{background-image:url("' + sheet + '")}';
  document.head.appendChild(style);
  svg.setAttribute('viewBox', (-PAD) + ' ' + (-PAD) + ' ' + (1000 + 2 * PAD) + ' ' + (1000 + 2 * PAD));
  var plain = document.createElementNS(NS, 'g'), flagged = document.createElementNS(NS, 'g');
  svg.appendChild(plain);
  svg.appendChild(flagged);  // drawn last, so flagged points stay on top
  data.points.forEach(function (p, i) {
    var link = document.createElementNS(NS, 'a'), dot = document.createElementNS(NS, 'circle');
    if (data.hrefs[i]) { link.setAttribute('href', data.hrefs[i]); link.setAttribute('target', '_blank'); }
    dot.setAttribute('cx', p[0]);
    dot.setAttribute('cy', 1000 - p[1]);
    dot.setAttribute('r', p[4] ? 9 : 6);
    dot.setAttribute('fill', classColour(p[2]));
    dot.setAttribute('class', ['pt'].concat(FLAGS.filter(function (f) { return p[4] & f[0]; })
      .map(function (f) { return f[1]; })).join(' '));
    dot.dataset.i = i;
    link.appendChild(dot);
    (p[4] ? flagged : plain).appendChild(link);
  });
  var legend = root.querySelector('.map-legend');
  legend.innerHTML = data.labels.map(function (label, c) {
    return '<span><i style="background:' + classColour(c) + '"></i>' + esc(label) + '</span>';
  }).join('') + FLAGS.map(function (f) {
    var count = data.points.filter(function (p) { return p[4] & f[0]; }).length;
    return '<span><i class="ring ' + f[1] + '"></i>' + f[2] + ' (' + count + ')</span>';
  }).join('');
  function esc(text) {
    return String(text).replace(/[&<>"]/g, function (ch) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[ch];
    });
  }
  function show(dot, event) {
    var i = Number(dot.dataset.i), p = data.points[i], path = data.paths[i];
    var col = i % data.columns, row = Math.floor(i / data.columns);
    var flags = FLAGS.filter(function (f) { return p[4] & f[0]; }).map(function (f) { return f[2]; });
    tip.innerHTML = '<div class="tile" style="width:' + data.tile + 'px;height:' + data.tile +
      'px;background-position:-' + (col * data.tile) + 'px -' + (row * data.tile) + 'px"></div><div><b>' +
      esc(data.labels[p[2]]) + '</b> · ' + esc(data.sets[p[5]]) +
      (p[3] >= 0 && p[3] !== p[2] ? '<br>taken for <b>' + esc(data.labels[p[3]]) + '</b>' : '') +
      (flags.length ? '<br><span class="flags">' + flags.join(', ') + '</span>' : '') +
      '<br><span class="file">' + esc(path.split('/').pop()) + '</span></div>';
    tip.hidden = false;
    var box = root.getBoundingClientRect();
    tip.style.left = Math.min(event.clientX - box.left + 14, box.width - 230) + 'px';
    tip.style.top = (event.clientY - box.top + 14) + 'px';
  }
  svg.addEventListener('mouseover', function (event) {
    if (event.target.classList.contains('pt')) { show(event.target, event); }
  });
  svg.addEventListener('mouseout', function (event) {
    if (event.target.classList.contains('pt')) { tip.hidden = true; }
  });
})();
