// The command-staff map: the top cells of a published forecast, with risk, rank and reasons on click.
// Data comes from /v1/forecasts with the viewer's API key (kept in sessionStorage); nothing is fetched from
// outside this server, so the page works without internet access.
(function () {
  "use strict";
  var config = window.HOTSPOT_MAP || {};
  var KEY_STORE = "hotspot.apiKey";
  var el = function (id) { return document.getElementById(id); };
  var map = L.map("map", { preferCanvas: false, zoomControl: true }).setView([0, 0], 2);
  L.control.scale({ imperial: false }).addTo(map);  // no background tiles by default: the scale gives distance
  if (config.tiles) {
    L.tileLayer(config.tiles, { maxZoom: 19 }).addTo(map);
  }
  var layer = null;
  var byRank = {};

  if (config.area) { el("area").textContent = "· " + config.area; }

  function setStatus(text, isError) {
    var s = el("status");
    s.textContent = text;
    s.className = isError ? "error" : "";
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORE); }

  function askKey(message) {
    if (message) { setStatus(message, true); }
    var dialog = el("key-dialog");
    if (!dialog.open) { dialog.showModal(); }
    el("api-key").focus();
  }

  function getJSON(url) {
    return fetch(url, { headers: { "X-API-Key": apiKey() || "", "Accept": "application/geo+json" } })
      .then(function (response) {
        if (response.status === 401) { sessionStorage.removeItem(KEY_STORE); throw new Error("key refused (401)"); }
        if (response.status === 403) { throw new Error("this key's role may not read forecasts (403)"); }
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.detail || ("HTTP " + response.status)); }
          return body;
        });
      });
  }

  // Colour by position among the cells shown (they are all high-percentile): darkest = highest risk.
  var SHADES = ["#67000d", "#a50f15", "#d7301f", "#ef6548", "#fc8d59", "#fdbb84"];
  function colour(position, count) {
    return SHADES[Math.min(SHADES.length - 1, Math.floor(SHADES.length * position / Math.max(count, 1)))];
  }

  function popupContent(props) {
    var box = document.createElement("div");
    box.className = "hotspot-popup";
    var h = document.createElement("h3");
    h.textContent = "Rank " + props.rank + " · cell " + props.cell_id;
    box.appendChild(h);
    var facts = document.createElement("div");
    facts.className = "facts";
    facts.textContent = "risk " + Number(props.risk).toFixed(3) + " expected incidents · percentile " +
      Number(props.percentile).toFixed(1);
    box.appendChild(facts);
    var reasons = props.reasons || [];
    if (reasons.length) {
      var list = document.createElement("ul");
      list.className = "reasons";
      reasons.forEach(function (r) { var li = document.createElement("li"); li.textContent = r; list.appendChild(li); });
      box.appendChild(list);
    } else {
      var none = document.createElement("p");
      none.className = "none reasons-none";
      none.textContent = "No feature raises this cell's risk above the model's baseline.";
      box.appendChild(none);
    }
    return box;
  }

  function showProvenance(meta) {
    var dl = document.createElement("dl");
    [["Week", meta.period_start], ["Version", meta.publication_version], ["Model", meta.model + " v" + meta.model_version],
     ["Data", (meta.data_fingerprint || "").slice(0, 16)], ["Made", meta.created_at],
     ["Cells shown", meta.returned_cells + " of " + meta.cells]].forEach(function (pair) {
      var dt = document.createElement("dt"); dt.textContent = pair[0];
      var dd = document.createElement("dd"); dd.textContent = pair[1];
      dl.appendChild(dt); dl.appendChild(dd);
    });
    el("provenance").replaceChildren(dl);
  }

  function showList(features) {
    var list = el("cells");
    list.replaceChildren();
    features.forEach(function (f) {
      var li = document.createElement("li");
      li.value = f.properties.rank;
      li.dataset.rank = f.properties.rank;
      li.textContent = "cell " + f.properties.cell_id + " · risk " + Number(f.properties.risk).toFixed(3);
      li.addEventListener("click", function () {
        var target = byRank[f.properties.rank];
        if (target) { map.fitBounds(target.getBounds(), { maxZoom: 16 }); target.openPopup(); }
      });
      list.appendChild(li);
    });
  }

  function render(collection) {
    if (layer) { map.removeLayer(layer); }
    byRank = {};
    var position = {};
    collection.features.forEach(function (f, i) { position[f.properties.rank] = i; });
    layer = L.geoJSON(collection, {
      style: function (f) {
        var shade = colour(position[f.properties.rank], collection.features.length);
        return { color: "#333", weight: 0.6, fillColor: shade, fillOpacity: 0.75,
                 className: "hotspot-cell rank-" + f.properties.rank };
      },
      onEachFeature: function (f, cellLayer) {
        byRank[f.properties.rank] = cellLayer;
        cellLayer.bindPopup(function () { return popupContent(f.properties); });
        cellLayer.bindTooltip("#" + f.properties.rank + " · risk " + Number(f.properties.risk).toFixed(2));
      }
    }).addTo(map);
    if (collection.features.length) { map.fitBounds(layer.getBounds(), { padding: [20, 20] }); }
    showProvenance(collection.metadata);
    showList(collection.features);
    document.body.dataset.cells = String(collection.features.length);
    setStatus(collection.features.length + " cells · week of " + collection.metadata.period_start);
  }

  function loadWeeks() {
    return getJSON("/v1/forecasts?limit=200").then(function (listing) {
      var select = el("week");
      var seen = {};
      select.replaceChildren();
      var latest = document.createElement("option");
      latest.value = "latest"; latest.textContent = "latest";
      select.appendChild(latest);
      listing.publications.forEach(function (p) {
        if (seen[p.week]) { return; }
        seen[p.week] = true;
        var o = document.createElement("option");
        o.value = p.week; o.textContent = p.week + " (v" + p.version + ")";
        select.appendChild(o);
      });
      select.disabled = false;
    });
  }

  function load() {
    if (!apiKey()) { askKey(); return; }
    var week = el("week").value || "latest";
    var url = "/v1/forecasts/" + encodeURIComponent(week) + "?top=" + encodeURIComponent(el("top").value);
    setStatus("loading…");
    getJSON(url).then(render).catch(function (err) {
      if (!apiKey()) { askKey(err.message); } else { setStatus(err.message, true); }
    });
  }

  function start() {
    if (!apiKey()) { askKey(); return; }
    loadWeeks().then(load).catch(function (err) {
      if (!apiKey()) { askKey(err.message); } else { setStatus(err.message, true); }
    });
  }

  el("key-form").addEventListener("submit", function () {
    sessionStorage.setItem(KEY_STORE, el("api-key").value.trim());
    el("api-key").value = "";
    start();
  });
  el("change-key").addEventListener("click", function () { askKey(); });
  el("week").addEventListener("change", load);
  el("top").addEventListener("change", load);
  start();
})();
