// The report pages: /reports (the index per model version) and /reports/{accuracy,fairness,trends}. The page holds
// no data; it asks for the API key (keydialog.js), fetches from the API with the key in a header, and shows a
// report's HTML in a sandboxed srcdoc frame (no script runs in it; it inherits this page's Content-Security-Policy,
// which allows its inline style and data: figures and nothing else).
(function () {
  "use strict";
  var el = function (id) { return document.getElementById(id); };
  var body = document.body;
  var params = new URLSearchParams(window.location.search);
  var saved = null;
  var picker = el("product");  // only where the area has several forecast products
  var product = picker ? picker.value : null;  // the server chose it from ?product= (the default when absent)
  var named = product && picker.selectedIndex > 0 ? product : null;  // a product other than the default

  // ?product= added to an API or page address (the default product needs none, so old links stay as they were)
  function withProduct(url) {
    if (!named) { return url; }
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + new URLSearchParams({ product: named }).toString();
  }

  if (picker) {
    // another product: the same page for it, its choice in the URL (a model version belongs to one product)
    picker.addEventListener("change", function () {
      var q = new URLSearchParams(window.location.search);
      q.delete("version");
      if (picker.selectedIndex > 0) { q.set("product", picker.value); } else { q.delete("product"); }
      var search = q.toString();
      window.location.href = window.location.pathname + (search ? "?" + search : "");
    });
  }

  function setStatus(text) { el("status").textContent = text || ""; }

  function showProblem(text) {
    var p = el("problem");
    p.textContent = text || "";
    p.hidden = !text;
  }

  function when(iso) {  // "2026-01-05T10:11:12Z" -> "2026-01-05 10:11 UTC"
    if (!iso) { return ""; }
    var m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
    return m ? m[1] + " " + m[2] + " UTC" : iso;
  }

  function node(tag, text, attrs) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) { n.textContent = text; }
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    return n;
  }

  // Fetch with the key; resolves to the response when it is usable, to null after showing why it is not.
  function get(url, accept, what) {
    if (!HotspotKey.get()) { HotspotKey.ask(); return Promise.resolve(null); }
    setStatus("loading…");
    showProblem("");
    return HotspotKey.request(url, { headers: { "Accept": accept } }).then(function (response) {
      return HotspotKey.refused(response, what, body.dataset.roles).then(function (wasRefused) {
        if (wasRefused) { setStatus(""); return null; }
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (b) {
            setStatus("");
            showProblem(b.detail || ("The server answered " + response.status + "."));
            return null;
          });
        }
        return response;
      });
    }).catch(function (err) { setStatus(""); showProblem("The server could not be reached: " + err.message); return null; });
  }

  // --- one report -------------------------------------------------------------------------------------------------

  function reportUrl(kind) {
    var q = new URLSearchParams({ format: "html" });
    if (kind === "trends") {
      if (params.get("area")) { q.set("area", params.get("area")); }
      return "/v1/trends?" + q.toString();
    }
    if (kind === "briefing") {
      if (params.get("week")) { q.set("week", params.get("week")); }
      return withProduct("/v1/briefing?" + q.toString());
    }
    if (params.get("version")) { q.set("version", params.get("version")); }
    return withProduct("/v1/reports/" + encodeURIComponent(kind) + "?" + q.toString());
  }

  function showReport() {
    var kind = body.dataset.kind;
    var version = params.get("version");
    var area = params.get("area");
    var latest = { trends: "whole area", briefing: params.get("week") ? "week of " + params.get("week") : "next week" };
    el("context").textContent = version ? "model version " + version : (area ? area : (latest[kind] || "latest"));
    var what = "the " + body.dataset.title.toLowerCase();
    get(reportUrl(kind), "text/html", what).then(function (response) {
      if (!response) { return; }
      return response.text().then(function (html) {
        var frame = el("report");
        frame.srcdoc = html;
        frame.hidden = false;
        if (saved) { URL.revokeObjectURL(saved); }
        saved = URL.createObjectURL(new Blob([html], { type: "text/html" }));
        var save = el("save");
        save.href = saved;
        save.download = kind + (named ? "-" + named : "") + (version ? "-v" + version : "") + (area ? "-" + area.replace(/[^A-Za-z0-9]+/g, "_") : "") + ".html";
        save.hidden = false;
        setStatus("");
        body.dataset.loaded = "true";
      });
    });
  }

  // --- the index ----------------------------------------------------------------------------------------------------

  function reportCell(link, label) {
    var td = node("td");
    if (!link) { td.appendChild(node("span", "none yet", { "class": "hs-none" })); return td; }
    td.appendChild(node("a", label, { href: link.page }));
    td.appendChild(node("span", " made " + when(link.created_at), { "class": "hs-when" }));
    return td;
  }

  function showIndex(index) {
    el("model-name").textContent = index.model || "(no model registered)";
    var rows = el("versions").querySelector("tbody");
    rows.replaceChildren();
    index.versions.forEach(function (v) {
      var tr = node("tr", null, { "data-version": v.version });
      var name = node("td");
      name.appendChild(node("b", "v" + v.version));
      if (v.champion) { name.appendChild(node("span", "champion", { "class": "hs-champion" })); }
      v.aliases.filter(function (a) { return a !== "champion"; }).forEach(function (a) {
        name.appendChild(node("span", a, { "class": "hs-alias" }));
      });
      tr.appendChild(name);
      tr.appendChild(node("td", when(v.created_at)));
      tr.appendChild(reportCell(v.reports.accuracy, "Accuracy report"));
      tr.appendChild(reportCell(v.reports.fairness, "Fairness audit"));
      rows.appendChild(tr);
    });
    el("versions").hidden = !index.versions.length;
    el("no-versions").hidden = !!index.versions.length;
    el("no-versions").textContent = index.note || "";
    el("versions-section").hidden = false;

    var latest = el("latest");
    latest.replaceChildren();
    [["accuracy", "Accuracy report"], ["fairness", "Fairness audit"]].forEach(function (pair) {
      var link = index.latest[pair[0]];
      var li = node("li");
      if (link) {
        li.appendChild(node("a", "Latest " + pair[1].toLowerCase(), { href: withProduct("/reports/" + pair[0]) }));
        li.appendChild(node("span", " made " + when(link.created_at) + " (run " + link.run_id.slice(0, 8) + ")",
                            { "class": "hs-when" }));
      } else {
        li.appendChild(node("span", pair[1] + ": none yet", { "class": "hs-none" }));
      }
      latest.appendChild(li);
    });
    el("latest-section").hidden = false;

    var trends = el("trends");
    trends.replaceChildren();
    index.trends.areas.forEach(function (area, i) {
      var li = node("li");
      var href = index.trends.page + (i === 0 ? "" : "?" + new URLSearchParams({ area: area }).toString());
      li.appendChild(node("a", area, { href: href }));
      trends.appendChild(li);
    });
    el("trends-made").textContent = "Made " + index.trends.made + ".";
    el("trends-section").hidden = false;
    setStatus(index.versions.length + " model version" + (index.versions.length === 1 ? "" : "s"));
    body.dataset.loaded = "true";
  }

  function loadIndex() {
    ["briefing-link", "map-link"].forEach(function (id) {
      var a = el(id);
      if (a) { a.href = withProduct(a.getAttribute("href")); }
    });
    get(withProduct("/v1/reports"), "application/json", "the reports index").then(function (response) {
      if (response) { return response.json().then(showIndex); }
    });
  }

  function start() { if (body.dataset.page === "index") { loadIndex(); } else { showReport(); } }
  HotspotKey.onEntered(start);  // a key entered later (after a refusal, or by "API key") loads the page again
  start();
})();
