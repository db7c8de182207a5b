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
