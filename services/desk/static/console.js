// Live work queue: fetch the rows (server-rendered HTML) every few seconds and swap them
// in, unless the person is using them (focus inside) or the tab is hidden. No library.
(function () {
  "use strict";
  var region = document.getElementById("queue-live");
  if (!region) { return; }
  var status = document.getElementById("queue-status");
  var every = parseInt(region.getAttribute("data-refresh-ms"), 10) || 5000;
  var lastTotal = null;
  function refresh() {
    if (document.hidden || region.contains(document.activeElement)) { return; }
    fetch(region.getAttribute("data-src"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/console/sign-in"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { return; }
        region.innerHTML = html;
        var total = region.querySelector(".count.total .n");
        var now = new Date().toISOString().slice(11, 19);
        if (status && total && total.textContent !== lastTotal) {
          status.textContent = "Updated " + now + " UTC: " + total.textContent + " alerts.";
          lastTotal = total.textContent;
        }
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }
  window.setInterval(refresh, every);
}());
