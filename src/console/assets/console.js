// relay console: the one script of the console (no inline script; the
// Content-Security-Policy allows only this file). It refreshes a table
// whose <tbody> names a fragment URL in data-poll, every few seconds, with
// HTML the relay rendered and escaped.
(function () {
  "use strict";
  var rows = document.querySelector("tbody[data-poll]");
  if (!rows) {
    return;
  }
  var url = rows.getAttribute("data-poll");
  var every = 3000;
  var live = document.getElementById("live");
  function say(text) {
    if (live) {
      live.textContent = text;
    }
  }
  function tick() {
    if (document.hidden) {
      setTimeout(tick, every);
      return;
    }
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) {
          say("Signed out: reload the page to sign in again.");
          return null;
        }
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        rows.innerHTML = html;
        say("Live: updated " + new Date().toLocaleTimeString());
        setTimeout(tick, every);
      })
      .catch(function () {
        say("Live: cannot reach the relay, retrying");
        setTimeout(tick, every * 2);
      });
  }
  setTimeout(tick, every);
})();
