// The review page: one card per finding; every change is a POST with the token, answered with the new state.
// Every name from the server is set as text (textContent, option.text), never parsed as HTML.
(function () {
  'use strict';
  var token = document.querySelector('meta[name="review-token"]').content;
  var cards = document.getElementById('cards');
  var state = null;
  var current = 0;
  var built = false;

  var TITLES = {
    label_error: 'Suspected label error',
    duplicate: 'Duplicate pair',
    misclassified: 'Misclassified image'
  };

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      if (key === 'text') { node.textContent = props[key]; }
      else if (key === 'className') { node.className = props[key]; }
      else if (key.indexOf('data-') === 0 || key === 'type' || key === 'placeholder' || key === 'aria-label') {
        node.setAttribute(key, props[key]);
      } else { node[key] = props[key]; }
    });
    (children || []).forEach(function (child) {
      if (child) { node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child); }
    });
    return node;
  }

  function say(text, kind) {
    var message = document.getElementById('message');
    message.textContent = text;
    message.className = kind || '';
  }

  function pictureUrl(id, side, size) {
    return '/image?id=' + id + '&side=' + side + '&size=' + size + '&token=' + encodeURIComponent(token);
  }

  function pct(value) { return value === null || value === undefined ? '?' : Math.round(value * 100) + '%'; }

  function labelOf(folder) {
    var found = state.classes.filter(function (c) { return c.folder === folder; })[0];
    return found ? found.label : folder;
  }

  // ------------------------------------------------------------------ building the cards

  function why(finding) {
    var image = finding.images[0];
    if (finding.kind === 'label_error') {
      return ['Filed as ', el('b', {text: image.label}), '; a layer that never saw it says ',
        el('b', {text: finding.suggested}), ' (' + pct(finding.detail.suggested_probability) + ' against ' +
        pct(finding.detail.label_probability) + ').'];
    }
    if (finding.kind === 'misclassified') {
      return ['A ' + (image.set === 'testing' ? 'test' : image.set) + ' image filed as ', el('b', {text: image.label}),
        '; the run predicted ', el('b', {text: finding.suggested}), '.'];
    }
    var a = finding.images[0], b = finding.images[1];
    var similarity = finding.detail.similarity;
    return [(finding.detail.duplicate === 'exact' ? 'The same file' : 'Near copies') +
      (similarity !== null && finding.detail.duplicate !== 'exact' ? ' (similarity ' + similarity.toFixed(3) + ')' : '') +
      ': ' + a.set + ' / ' + b.set + (a.label !== b.label ? ', in two classes' : '') +
      (a.set !== b.set ? ': the held-out one leaks into the run' : '') + '. Exclude one of the two, or keep both.'];
  }

  function figure(finding, side) {
    var image = finding.images[side];
    var img = el('img', {alt: image.name, loading: 'lazy', src: pictureUrl(finding.id, side, 'thumb')});
    img.addEventListener('click', function () { zoom(finding.id, side); });
    return el('figure', {}, [img, el('figcaption', {}, [
      el('b', {text: image.label}), ' · ' + image.set + ' · ', el('span', {className: 'file', text: image.name})])]);
  }

  function build() {
    cards.textContent = '';
    state.findings.forEach(function (finding, index) {
      var title = TITLES[finding.kind] + (finding.kind === 'duplicate' ? ' (' + finding.detail.duplicate + ')' : '');
      var pictures = el('div', {className: 'pictures'}, finding.images.map(function (_, side) {
        return figure(finding, side);
      }));
      var card = el('section', {className: 'card', tabIndex: -1, 'data-id': String(finding.id)}, [
        el('h2', {}, [el('span', {className: 'number', text: '#' + (index + 1)}), title]),
        pictures,
        el('p', {className: 'why'}, why(finding)),
        el('div', {className: 'actions'})
      ]);
      card.addEventListener('click', function () { focusCard(index, false); });
      cards.appendChild(card);
    });
    built = true;
  }

  function actionsFor(finding) {
    if (finding.decision) {
      return [el('span', {className: 'status', text: finding.decision.text}),
        button('Undo', 'undo', function () { undo(finding); })];
    }
    if (finding.kind === 'duplicate') {
      return [button('Exclude the first', 'exclude-0', function () { act(finding, 'exclude', 0); }),
        button('Exclude the second', 'exclude-1', function () { act(finding, 'exclude', 1); }),
        button('Keep both', 'keep', function () { act(finding, 'keep', 0); })];
    }
    var suggestedFolder = state.suggested_folders[finding.suggested];
    var select = el('select', {'aria-label': 'class', 'data-role': 'class'}, [el('option', {value: '', text: 'Move to…'})]
      .concat(state.classes.filter(function (c) { return c.folder !== finding.images[0].folder; }).map(function (c) {
        return el('option', {value: c.folder, text: c.label});
      })).concat([el('option', {value: '\u0000new', text: 'a new class…'})]));
    var typed = el('input', {type: 'text', className: 'new-class', placeholder: 'new class', hidden: true,
      'data-role': 'new-class'});
    select.addEventListener('change', function () {
      if (select.value === '\u0000new') { typed.hidden = false; typed.focus(); }
      else if (select.value) { act(finding, 'move', 0, select.value); }
    });
    typed.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' && typed.value.trim()) { act(finding, 'move', 0, typed.value.trim()); }
      event.stopPropagation();
    });
    return [
      suggestedFolder ? button('Move to ' + finding.suggested, 'move', function () {
        act(finding, 'move', 0, suggestedFolder);
      }, true) : null,
      select, typed,
      button('Exclude', 'exclude', function () { act(finding, 'exclude', 0); }),
      button('Keep as labelled', 'keep', function () { act(finding, 'keep', 0); })
    ];
  }

  function button(text, role, onClick, primary) {
    var b = el('button', {type: 'button', text: text, className: primary ? 'primary' : '', 'data-action': role});
    b.addEventListener('click', function (event) { event.stopPropagation(); onClick(); });
    return b;
  }

  function render() {
    if (!built) { build(); }
    state.findings.forEach(function (finding, index) {
      var card = cards.children[index];
      var actions = card.querySelector('.actions');
      actions.textContent = '';
      actionsFor(finding).forEach(function (node) { if (node) { actions.appendChild(node); } });
      card.classList.toggle('decided', !!finding.decision);
      card.querySelectorAll('figcaption b').forEach(function (b, side) {
        var now = finding.images[side].now;
        b.textContent = now.indexOf('.excluded/') === 0 ? 'excluded' : labelOf(now.split('/')[0]);
      });
    });
    var total = state.findings.length;
    document.getElementById('left').textContent = total ? state.left + ' of ' + total + ' finding' +
      (total === 1 ? '' : 's') + ' left' : 'The last run found nothing to review.';
    if (total) { focusCard(Math.min(current, total - 1), false); }
  }

  // ------------------------------------------------------------------ talking to the server

  function send(path, body) {
    return fetch(path, {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-Review-Token': token},
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (answer.state) { state = answer.state; render(); }
        if (answer.ok) { say('Done: ' + answer.change, 'done'); return true; }
        say(answer.error || 'The server refused the change.', 'error');
        return false;
      });
    }).catch(function () { say('The review server is not answering (was it stopped?).', 'error'); });
  }

  function act(finding, action, side, folder) {
    var body = {id: finding.id, action: action, side: side};
    if (folder) { body.folder = folder; }
    send('/api/act', body).then(function (ok) { if (ok) { next(); } });
  }

  function undo(finding) { send('/api/undo', {id: finding.id}); }

  function load() {
    fetch('/api/state', {headers: {'X-Review-Token': token}}).then(function (r) { return r.json(); })
      .then(function (answer) { state = answer; render(); })
      .catch(function () { say('The review server is not answering.', 'error'); });
  }

  // ------------------------------------------------------------------ focus, keys and the large image

  function focusCard(index, scroll) {
    current = index;
    Array.prototype.forEach.call(cards.children, function (card, i) { card.classList.toggle('current', i === index); });
    var card = cards.children[index];
    if (card && scroll !== false) { card.focus({preventScroll: true}); card.scrollIntoView({block: 'center'}); }
  }

  function next() {
    for (var i = current + 1; i < state.findings.length; i++) {
      if (!state.findings[i].decision) { focusCard(i); return; }
    }
  }

  function zoom(id, side) {
    var box = document.getElementById('zoom');
    var finding = state.findings.filter(function (f) { return f.id === id; })[0];
    document.getElementById('zoom-image').src = pictureUrl(id, side, 'large');
    document.getElementById('zoom-caption').textContent = finding.images[side].now;
    box.hidden = false;
  }

  document.getElementById('zoom').addEventListener('click', function () {
    document.getElementById('zoom').hidden = true;
  });

  document.addEventListener('keydown', function (event) {
    var zoomed = !document.getElementById('zoom').hidden;
    if (event.key === 'Escape') { document.getElementById('zoom').hidden = true; return; }
    if (!state || !state.findings.length || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName)) { return; }
    if (event.target.tagName === 'BUTTON' && (event.key === 'Enter' || event.key === ' ')) { return; }
    var finding = state.findings[current];
    var handled = true;
    switch (event.key) {
      case 'j': case 'ArrowDown': focusCard(Math.min(current + 1, state.findings.length - 1)); break;
      case 'k': case 'ArrowUp': focusCard(Math.max(current - 1, 0)); break;
      case 'z': case 'Enter': if (zoomed) { document.getElementById('zoom').hidden = true; } else { zoom(finding.id, 0); } break;
      case 'u': if (finding.decision) { undo(finding); } break;
      default: handled = false;
    }
    if (!handled && !finding.decision) {
      handled = true;
      var single = finding.kind !== 'duplicate';
      switch (event.key) {
        case 'm': if (single && state.suggested_folders[finding.suggested]) {
          act(finding, 'move', 0, state.suggested_folders[finding.suggested]);
        } break;
        case 'c': if (single) { cards.children[current].querySelector('select').focus(); } break;
        case 'x': if (single) { act(finding, 'exclude', 0); } break;
        case '1': if (!single) { act(finding, 'exclude', 0); } break;
        case '2': if (!single) { act(finding, 'exclude', 1); } break;
        case 'a': act(finding, 'keep', 0); break;
        default: handled = false;
      }
    }
    if (handled) { event.preventDefault(); }
  });

  load();
})();
