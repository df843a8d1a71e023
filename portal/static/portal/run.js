/* Follows a run live: the log, progress and status arrive as Server-Sent Events from
   the API (the session cookie authenticates). When the run ends, the page reloads so
   that the server renders its result and files. Without JavaScript the page refreshes
   itself (noscript) until the run ends. */
(function () {
  "use strict";
  var root = document.querySelector("[data-run-events]");
  if (!root || !window.EventSource) { return; }
  var FINISHED = ["succeeded", "failed", "timed_out", "cancelled", "lost", "deleted"];
  var log = root.querySelector(".run-log");
  var bar = root.querySelector("progress");
  var progressText = root.querySelector(".run-progress");
  var statusEl = root.querySelector(".run-status");
  var url = root.getAttribute("data-run-events");
  var lastSeq = root.getAttribute("data-last-seq") || "0";
  var source = new EventSource(url + (url.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + lastSeq);
  source.addEventListener("log", function (e) {
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 5;
    log.textContent += JSON.parse(e.data).text;
    if (atBottom) { log.scrollTop = log.scrollHeight; }
  });
  source.addEventListener("progress", function (e) {
    var p = JSON.parse(e.data);
    if (bar) { bar.value = p.percent || 0; }
    if (progressText) { progressText.textContent = (p.percent || 0) + "% " + (p.message || ""); }
  });
  source.addEventListener("status", function (e) {
    var s = JSON.parse(e.data);
    statusEl.textContent = s.status.replace("_", " ");
    statusEl.className = "run-status badge status-" + s.status;
    if (s.error_message) { statusEl.title = s.error_message; }
    root.setAttribute("data-status", s.status);
    if (FINISHED.indexOf(s.status) >= 0) {
      source.close();
      if (root.getAttribute("data-reload") === "1" && s.status !== "deleted") {
        window.setTimeout(function () { window.location.reload(); }, 300);
      }
    }
  });
  source.onerror = function () {
    if (FINISHED.indexOf(root.getAttribute("data-status")) >= 0) { source.close(); }
  };
})();
