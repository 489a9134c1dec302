// The console's few behaviours, no library:
// - the work queue fetches its rows (server-rendered HTML) every few seconds and swaps
//   them in, unless the person is using them (focus inside, a note being written) or the
//   tab is hidden; groups left open stay open;
// - countdowns ("in 12 min") count down between refreshes, against the server's clock;
// - a Print button prints the page.
(function () {
  "use strict";
  var MINUTE = 60, HOUR = 3600, DAY = 86400;
  var body = document.body;
  var serverNow = Date.parse(body.getAttribute("data-now") || "");
  // The server's clock is the one deadlines are reckoned by: keep the difference.
  var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  // The wording of services/notify/wording.py span(): whole units, rounded down.
  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var days = Math.floor(seconds / DAY), rest = seconds % DAY;
    var hours = Math.floor(rest / HOUR), minutes = Math.floor((rest % HOUR) / MINUTE);
    if (days) { return hours ? days + " d " + hours + " h" : days + " d"; }
    if (hours) { return minutes ? hours + " h " + minutes + " min" : hours + " h"; }
    if (minutes) { return minutes + " min"; }
    return "under 1 min";
  }

  function tick() {
    var now = Date.now() + skew;
    var counters = document.querySelectorAll(".countdown[data-at]");
    for (var i = 0; i < counters.length; i += 1) {
      var at = Date.parse(counters[i].getAttribute("data-at"));
      if (isNaN(at)) { continue; }
      var text = at <= now ? "now" : "in " + span((at - now) / 1000);
      if (counters[i].textContent !== text) { counters[i].textContent = text; }
    }
  }
  window.setInterval(tick, 15000);

  // On a phone the queue comes first: the filters fold away unless some are in use.
  var filters = document.getElementById("filter-box");
  if (filters && filters.getAttribute("data-active") === "0" && window.matchMedia("(max-width: 48rem)").matches) {
    filters.open = false;
  }

  var printers = document.querySelectorAll("[data-print]");
  for (var p = 0; p < printers.length; p += 1) {
    printers[p].addEventListener("click", function () { window.print(); });
  }

  var region = document.getElementById("queue-live");
  if (!region) { return; }
  var status = document.getElementById("queue-status");
  var zone = status ? status.getAttribute("data-zone") : null;
  var every = parseInt(region.getAttribute("data-refresh-ms"), 10) || 5000;
  var lastTotal = null;

  function busy() {
    if (region.contains(document.activeElement)) { return true; }
    var notes = region.querySelectorAll("textarea");
    for (var i = 0; i < notes.length; i += 1) {
      if (notes[i].value) { return true; }
    }
    return false;
  }

  function openGroups() {
    var open = {};
    var groups = region.querySelectorAll("details[data-group][open]");
    for (var i = 0; i < groups.length; i += 1) { open[groups[i].getAttribute("data-group")] = true; }
    return open;
  }

  function reopen(open) {
    var groups = region.querySelectorAll("details[data-group]");
    for (var i = 0; i < groups.length; i += 1) {
      if (open[groups[i].getAttribute("data-group")]) { groups[i].open = true; }
    }
  }

  function clock() {
    try {
      return new Date(Date.now() + skew).toLocaleTimeString("en-GB", { timeZone: zone || undefined, timeZoneName: "short" });
    } catch (e) {
      return new Date(Date.now() + skew).toISOString().slice(11, 19) + " UTC";
    }
  }

  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(region.getAttribute("data-src"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/console/sign-in"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null || busy()) { return; }
        var open = openGroups();
        region.innerHTML = html;
        reopen(open);
        var total = region.querySelector(".count.total .n");
        if (status && total && total.textContent !== lastTotal) {
          status.textContent = "Updated " + clock() + ": " + total.textContent + " alerts.";
          lastTotal = total.textContent;
        }
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }
  window.setInterval(refresh, every);
}());
