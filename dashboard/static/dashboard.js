// Live updates for the server-rendered pages; everything here is optional (pages work without it).
(function () {
  "use strict";
  var PERIOD = 2000;

  // Regions marked data-refresh (with an id) are re-fetched and swapped when their content changes.
  function refresh() {
    var regions = document.querySelectorAll("[data-refresh][id]");
    if (!regions.length || document.hidden) return;
    var focused = document.activeElement;
    if (focused && focused.closest && focused.closest("[data-refresh] form")) return;  // do not wipe typing
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next && next.innerHTML !== el.innerHTML) el.innerHTML = next.innerHTML;
        });
      })
      .catch(function () { /* offline for a moment: try again next period */ });
  }

  // A running sync's logs arrive as server-sent events: the first event of a stage replaces what the
  // server rendered (the stream starts from the beginning), later ones append.
  function followLogs(section) {
    if (!window.EventSource) return;
    var seen = {};
    var source = new EventSource(section.getAttribute("data-log-stream"));
    source.addEventListener("log", function (event) {
      var data = JSON.parse(event.data);
      var pre = section.querySelector('pre[data-stage="' + data.stage + '"]');
      if (!pre) return;
      pre.textContent = seen[data.stage] ? pre.textContent + data.text : data.text;
      seen[data.stage] = true;
      pre.closest("details").open = true;
      pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", function () { source.close(); setTimeout(refresh, 200); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-log-stream]").forEach(followLogs);
    setInterval(refresh, PERIOD);
  });
})();
