// The API key of the service's browser pages, shared by the report pages (and ready for the map; see the note at
// the end). The key is kept in this tab's sessionStorage (the map's slot, so one entry serves every page of the
// tab) and sent in the X-API-Key header; it never goes into a URL, a cookie or the page's address.
//
// The page provides the elements (serving/templates/key_dialog.html.j2; the map page has the same ids):
//   <dialog id="key-dialog"><form id="key-form" method="dialog"><input id="api-key">...</form></dialog>
//   <div id="refused" hidden><p id="refused-text"></p><button id="refused-retry"></button></div>  (optional)
window.HotspotKey = (function () {
  "use strict";
  var STORE = "hotspot.apiKey";
  var el = function (id) { return document.getElementById(id); };
  var onKey = null;

  function get() { return sessionStorage.getItem(STORE); }
  function set(key) { sessionStorage.setItem(STORE, key); }
  function clear() { sessionStorage.removeItem(STORE); }

  // What to do whenever a key has been entered (e.g. load the page's data again).
  function onEntered(then) { onKey = then; }

  // Open the dialog; `then` (default: the onEntered function) runs once a key has been entered.
  function ask(then) {
    onKey = then || onKey;
    var dialog = el("key-dialog");
    if (!dialog.open) { dialog.showModal(); }
    el("api-key").focus();
  }

  // fetch() with the key in the header (options.headers may add others).
  function request(url, options) {
    options = options || {};
    var headers = Object.assign({}, options.headers || {}, { "X-API-Key": get() || "" });
    return fetch(url, Object.assign({}, options, { headers: headers, credentials: "omit" }));
  }

  // The sentence for a refused key: 401 (unknown or revoked; the stored key is dropped) or 403 (its role may not:
  // says which roles may). `what` names the thing refused ("the accuracy report"), `roles` who may read it.
  function refusalText(status, detail, what, roles) {
    if (status === 401) {
      clear();
      return "The API key was refused: it is unknown, mistyped or revoked, so " + what + " cannot be shown. " +
        "Enter a valid key.";
    }
    var match = /role '([^']+)'/.exec(detail || "");
    var role = match ? "the " + match[1] + " role" : "its role";
    return "This key has " + role + ", which may not open " + what + ": that needs the " + roles + " role. " +
      "Ask your administrator for such a key, or enter another one.";
  }

  // Show the full-width refusal (the page's #refused box) for a 401/403 response; false for any other status.
  function refused(response, what, roles) {
    if (response.status !== 401 && response.status !== 403) { return Promise.resolve(false); }
    return response.json().catch(function () { return {}; }).then(function (body) {
      showRefusal(refusalText(response.status, body.detail, what, roles));
      return true;
    });
  }

  function showRefusal(text) {
    var box = el("refused");
    if (!box) { ask(); return; }
    el("refused-text").textContent = text;
    box.hidden = false;
    document.body.classList.add("hs-is-refused");
  }

  function hideRefusal() {
    var box = el("refused");
    if (box) { box.hidden = true; }
    document.body.classList.remove("hs-is-refused");
  }

  function wire() {
    el("key-form").addEventListener("submit", function () {
      var key = el("api-key").value.trim();
      el("api-key").value = "";
      if (!key) { return; }
      set(key);
      hideRefusal();
      if (onKey) { onKey(); }
    });
    var retry = el("refused-retry");
    if (retry) { retry.addEventListener("click", function () { ask(); }); }
    var change = el("change-key");
    if (change) { change.addEventListener("click", function () { ask(); }); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", wire); } else { wire(); }
  return { get: get, set: set, clear: clear, ask: ask, onEntered: onEntered, request: request, refused: refused,
           refusalText: refusalText, showRefusal: showRefusal, hideRefusal: hideRefusal };
})();
// For map.js (not changed here): load this script before it and replace its apiKey()/askKey()/key-form handler with
// HotspotKey.get(), HotspotKey.onEntered(start), HotspotKey.ask() and HotspotKey.request(url, {headers: {Accept:
// ...}}); on a 401/403 call
// HotspotKey.refused(response, "the forecast map", "viewer, auditor or analyst") with a #refused box in the page
// (the markup above, styled by .hs-refused in reports.css) for the full-width message.
