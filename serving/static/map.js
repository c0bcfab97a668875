// The command-staff map: the study area and its named areas, the top cells of a published forecast coloured by risk
// class with a legend, the top list by place name (click or Enter zooms to the cell), and the cells new in the top
// list since the week before. Data comes from /v1/areas and /v1/forecasts with the viewer's API key (kept in
// sessionStorage); nothing is fetched from outside this server unless a tile server is configured. Where the area
// has several forecast products, the picker chooses whose published forecast is shown (?product= in the page's URL,
// so a link opens the same view).
(function () {
  "use strict";
  var config = window.HOTSPOT_MAP || {};
  var KEY_STORE = "hotspot.apiKey";
  var el = function (id) { return document.getElementById(id); };

  // Risk classes: the share of the study area's cells ranked above a cell, at the coverages the accuracy report
  // uses (hit rate and PAI at 0.5%, 1%, 2%, 5%, 10%), darkest = highest risk.
  var CLASSES = [
    { upTo: 0.005, label: "top 0.5%", colour: "#67000d" },
    { upTo: 0.01, label: "top 0.5–1%", colour: "#b2182b" },
    { upTo: 0.02, label: "top 1–2%", colour: "#e34a33" },
    { upTo: 0.05, label: "top 2–5%", colour: "#fc8d59" },
    { upTo: 0.10, label: "top 5–10%", colour: "#fdbb84" },
    { upTo: 1.00, label: "below the top 10%", colour: "#fee8c8" }
  ];
  var LABEL_ZOOM_ALL = 14;  // from this zoom on, every area's name is shown where it fits
  var SMALL_CELL_ZOOM = 13;  // below this zoom cells get a wide stroke so that they stay visible

  var map = L.map("map", { zoomControl: true, zoomSnap: 0.25 }).setView([0, 0], 2);
  map.createPane("areas").style.zIndex = 350;      // under the cells (overlayPane, 400)
  map.createPane("labels");                        // area names, never catching clicks (depth: labelDepth)
  map.getPane("labels").style.pointerEvents = "none";
  L.control.scale({ imperial: false }).addTo(map);
  map.attributionControl.setPrefix(false);  // no link out of the page
  if (config.tiles) {
    // the attribution is plain text from the service's settings: escaped, never read as HTML
    var attribution = document.createElement("span");
    attribution.textContent = config.tileAttribution || "";
    L.tileLayer(config.tiles, { maxZoom: 19, attribution: attribution.innerHTML }).addTo(map);
    document.body.classList.add("with-tiles");
  }

  var state = { weeks: [], areas: null, areaLayer: null, labels: [], cells: null, byRank: {}, fitted: false };
  if (config.area) { el("area").textContent = "· " + config.area; }

  // ---- the forecast product ----------------------------------------------------------------------------------------

  var products = config.products || [];  // [{name, title}], the default first; empty for an area without [[products]]
  var picker = el("product");

  function currentProduct() {
    var name = picker ? picker.value : (products.length ? products[0].name : null);
    return products.filter(function (p) { return p.name === name; })[0] || products[0] || null;
  }

  // ?product= on an API or page address, for any product but the default (whose addresses stay as they were)
  function withProduct(url) {
    var p = currentProduct();
    if (!p || p === products[0]) { return url; }
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + new URLSearchParams({ product: p.name }).toString();
  }

  function showProduct() {
    var p = currentProduct();
    el("product-title").textContent = p ? "· " + p.title : "";
    el("briefing-link").href = withProduct("/reports/briefing");
    document.body.dataset.product = p ? p.name : "";
    // the page's own URL says which product it shows, so a copied link opens the same view
    var q = new URLSearchParams(window.location.search);
    if (p && p !== products[0]) { q.set("product", p.name); } else { q.delete("product"); }
    var search = q.toString();
    window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
  }
  showProduct();

  function setStatus(text, isError) {
    var s = el("status");
    s.textContent = text;
    s.className = isError ? "error" : "";
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORE); }

  function askKey() {
    var dialog = el("key-dialog");
    if (!dialog.open) { dialog.showModal(); }
    el("api-key").focus();
  }

  function showMessage(title, text, command, offerKey) {
    el("message-title").textContent = title;
    el("message-text").textContent = text;
    el("message-command").textContent = command || "";
    el("message-command").hidden = !command;
    el("message-key").hidden = !offerKey;
    el("message").hidden = false;
    document.body.classList.add("has-message");
    setStatus("");
  }

  function clearMessage() {
    el("message").hidden = true;
    document.body.classList.remove("has-message");
  }

  function HttpError(status, detail) {
    this.status = status;
    this.message = detail;
  }

  function getJSON(url) {
    return fetch(url, { headers: { "X-API-Key": apiKey() || "", "Accept": "application/geo+json" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok) { throw new HttpError(response.status, body.detail || ("HTTP " + response.status)); }
          return body;
        });
      });
  }

  // What stops the page, said across its full width: a refused key, a role without access, nothing published.
  function showProblem(err) {
    if (err.status === 401) {
      sessionStorage.removeItem(KEY_STORE);
      showMessage("API key refused",
                  "The server does not accept this key: it is unknown or has been revoked. Enter a valid key " +
                  "with the viewer role or above; an administrator makes one with the command below.",
                  "hotspot keys create --role viewer --name \"your name\"", true);
    } else if (err.status === 403) {
      showMessage("This key may not read forecasts",
                  "The key was accepted, but its role may not read the forecast map (" + err.message + "). " +
                  "Command staff need a viewer key; an administrator makes one with the command below.",
                  "hotspot keys create --role viewer --name \"your name\"", true);
    } else if (err.status === 404) {
      showMessage("No forecast published yet",
                  sentence(err.message || "nothing is published for this area") + " The map shows a forecast once an " +
                  "analyst has published one: on the server, run the command below (it forecasts the first week after " +
                  "the data with the champion model; add --week YYYY-MM-DD for another week), or POST to " +
                  "/v1/forecasts with an analyst key.",
                  "hotspot publish -c AREA.toml" + (currentProduct() && products.length > 1 ?
                                                    " --product " + currentProduct().name : ""), false);
    } else {
      showMessage("The forecast could not be loaded", err.message || String(err), null, false);
    }
  }

  function sentence(text) {
    return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  }

  function expected(risk) {
    var r = Number(risk);
    return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2);
  }

  // The class of a rank among `cells` cells, and the rank each class ends at.
  function classEnds(cells) {
    return CLASSES.map(function (c) { return c.upTo >= 1 ? cells : Math.max(1, Math.round(c.upTo * cells)); });
  }

  function classOf(rank, ends) {
    for (var i = 0; i < ends.length; i++) { if (rank <= ends[i]) { return i; } }
    return ends.length - 1;
  }

  // ---- the study area and its named areas --------------------------------------------------------------------

  function drawAreas(collection) {
    if (state.areaLayer) { map.removeLayer(state.areaLayer); }
    state.labels.forEach(function (l) { map.removeLayer(l.marker); });
    state.labels = [];
    state.areas = collection;
    state.areaLayer = L.geoJSON(collection, {
      pane: "areas",
      interactive: false,
      style: function (f) {
        return f.properties.kind === "outline"
          ? { className: "study-outline", color: "#1d2a3a", weight: 2.5, fill: !config.tiles, fillColor: "#ffffff",
              fillOpacity: 1 }
          : { className: "named-area", color: "#98a2ae", weight: 1, fill: false };
      }
    }).addTo(map);
    collection.features.forEach(function (f) {
      if (f.properties.kind !== "area" || !f.properties.label) { return; }
      // a zero-size anchor at the label point, its name centred on it (Leaflet positions the anchor itself)
      var icon = L.divIcon({ className: "area-anchor", html: "<span class=\"area-label\"></span>", iconSize: [0, 0] });
      var marker = L.marker([f.properties.label[1], f.properties.label[0]],
                            { icon: icon, pane: "labels", interactive: false, keyboard: false });
      marker.addTo(map);
      var node = marker.getElement().firstChild;
      node.textContent = f.properties.name;
      node.dataset.name = f.properties.name;
      state.labels.push({ name: f.properties.name, nCells: f.properties.n_cells || 0, marker: marker, node: node });
    });
    document.body.dataset.areas = String(state.labels.length);
    if (!state.fitted) { fitArea(); }
    declutter();
  }

  // Fit the study area (or, until it has loaded, the cells); not animated, so the first view is final at once.
  function fitArea() {
    var layer = state.areaLayer && state.areaLayer.getLayers().length ? state.areaLayer
      : state.cells && state.cells.getLayers().length ? state.cells : null;
    if (!layer) { return; }
    map.fitBounds(layer.getBounds(), { padding: [10, 10], animate: false });
    state.fitted = layer === state.areaLayer && state.cells !== null;
    document.body.dataset.fitted = String(state.fitted);  // for tests: the first view is final
  }

  // Area names where they fit: areas holding the highest-ranked cells first, then the larger ones; below
  // LABEL_ZOOM_ALL only areas holding a listed cell. A name that would overlap one already placed is hidden.
  function declutter() {
    if (!state.labels.length) { return; }
    var best = {};
    if (state.cells) {
      state.cells.eachLayer(function (layer) {
        var p = layer.feature.properties;
        if (p.place && !(best[p.place] <= p.rank)) { best[p.place] = p.rank; }
      });
    }
    var zoomedIn = map.getZoom() >= LABEL_ZOOM_ALL;
    var order = state.labels.slice().sort(function (a, b) {
      var ra = best[a.name] || Infinity, rb = best[b.name] || Infinity;
      return ra !== rb ? ra - rb : b.nCells - a.nCells;
    });
    // the zoom buttons and the scale take their place first, so no name hides under them
    var placed = Array.prototype.map.call(document.querySelectorAll("#map .leaflet-control"), function (c) {
      return c.getBoundingClientRect();
    });
    var frame = map.getContainer().getBoundingClientRect();  // a name cut by the map's edge is not shown
    var shown = 0;
    order.forEach(function (label) {
      var node = label.node;
      node.classList.toggle("has-top", best[label.name] !== undefined);
      if (!zoomedIn && best[label.name] === undefined) { node.classList.add("hidden"); return; }
      node.classList.remove("hidden");
      var box = node.getBoundingClientRect();
      var inside = box.left >= frame.left && box.right <= frame.right && box.top >= frame.top &&
        box.bottom <= frame.bottom;
      var clash = !inside || placed.some(function (p) {
        return box.left < p.right + 10 && box.right + 10 > p.left && box.top < p.bottom + 3 && box.bottom + 3 > p.top;
      });
      if (clash) { node.classList.add("hidden"); return; }
      placed.push(box);
      shown += 1;
    });
    document.body.dataset.labelsShown = String(shown);
  }

  map.on("zoomend moveend", declutter);
  // Zoomed out, cells are specks a name would hide: names go under them; zoomed in, over them (a cell is large).
  function labelDepth() {
    map.getPane("labels").style.zIndex = map.getZoom() < SMALL_CELL_ZOOM ? 390 : 450;
  }
  labelDepth();
  map.on("zoomend", function () {
    labelDepth();
    if (state.cells) { state.cells.setStyle(state.cellStyle); }
  });
  map.on("moveend", function () {
    var c = map.getCenter();
    document.body.dataset.zoom = String(map.getZoom());
    document.body.dataset.center = c.lat.toFixed(5) + "," + c.lng.toFixed(5);
  });

  // ---- the forecast --------------------------------------------------------------------------------------------

  function popupContent(p, isNew, className) {
    var box = document.createElement("div");
    box.className = "hotspot-popup";
    var h = document.createElement("h3");
    h.textContent = "#" + p.rank + " · " + (p.place || "cell " + p.cell_id);
    box.appendChild(h);
    var facts = document.createElement("div");
    facts.className = "facts";
    facts.textContent = expected(p.risk) + " expected recorded incidents in the week · " + CLASSES[className].label +
      " of cells";
    box.appendChild(facts);
    if (isNew) {
      var fresh = document.createElement("div");
      fresh.className = "new-note";
      fresh.textContent = "New in the top list this week";
      box.appendChild(fresh);
    }
    var reasons = p.reasons || [];
    if (reasons.length) {
      var list = document.createElement("ul");
      list.className = "reasons";
      reasons.forEach(function (r) {
        var li = document.createElement("li");
        li.textContent = r;
        list.appendChild(li);
      });
      box.appendChild(list);
    } else {
      var none = document.createElement("p");
      none.className = "none reasons-none";
      none.textContent = "No feature raises this cell's risk above the model's baseline.";
      box.appendChild(none);
    }
    var id = document.createElement("div");
    id.className = "cell-id";
    id.textContent = "cell " + p.cell_id + " · " + Number(p.lat).toFixed(4) + ", " + Number(p.lon).toFixed(4);
    box.appendChild(id);
    return box;
  }

  function showLegend(collection, ends) {
    var box = document.createElement("div");
    var title = document.createElement("h3");
    var product = currentProduct();
    title.textContent = (product ? product.title + " · risk" : "Risk") + ": expected recorded incidents in the week " +
      "of " + collection.metadata.period_start;
    box.appendChild(title);
    var shown = collection.features.length;
    var table = document.createElement("table");
    CLASSES.forEach(function (c, i) {
      var ranks = collection.features.filter(function (f) { return classOf(f.properties.rank, ends) === i; });
      if (!ranks.length) { return; }
      var first = i === 0 ? 1 : ends[i - 1] + 1;
      var hi = ranks[0].properties.risk, lo = ranks[ranks.length - 1].properties.risk;
      var tr = document.createElement("tr");
      tr.className = "legend-class";
      var swatch = document.createElement("td");
      swatch.className = "swatch";
      swatch.style.background = c.colour;
      var name = document.createElement("td");
      var count = ends[i] - first + 1;
      name.textContent = c.label + " (" + (ranks.length < count ? ranks.length + " of " + count : count) + " cells)";
      var range = document.createElement("td");
      range.className = "range";
      range.textContent = hi === lo ? expected(hi) : expected(lo) + "–" + expected(hi);
      tr.append(swatch, name, range);
      table.appendChild(tr);
    });
    box.appendChild(table);
    var fresh = document.createElement("div");
    fresh.className = "legend-new";
    var mark = document.createElement("span");
    mark.className = "new-swatch";
    fresh.append(mark, document.createTextNode(" new in the top " + shown + " this week"));
    box.appendChild(fresh);
    var note = document.createElement("p");
    note.textContent = "Cells of " + (collection.metadata.cell_size_m || "?") + " m. Recorded incidents are policing " +
      "data: they show where crime was reported and recorded, not all crime.";
    box.appendChild(note);
    el("legend").replaceChildren.apply(el("legend"), Array.prototype.slice.call(box.childNodes));
  }

  // what auto did, in short: a blend or a choice, judged on the weeks before its (refit) week
  function autoWords(sel, chosen) {
    var weeks = sel.validation_weeks.length + " weeks before " +
      (sel.refit_week && sel.refit_week !== sel.forecast_week ? "its refit of " + sel.refit_week : "it");
    return sel.weights ? "auto: a blend of its candidates, weighed on the " + weeks
                       : "auto chose " + chosen + " (best over the " + weeks + ")";
  }

  function showProvenance(meta) {
    var dl = document.createElement("dl");
    [["Week", meta.period_start], ["Version", meta.publication_version],
     ["Model", meta.selection ? autoWords(meta.selection, meta.model_version) : meta.model + " v" + meta.model_version],
     ["Data", (meta.data_fingerprint || "").slice(0, 16)], ["Made", meta.created_at],
     ["Cells shown", meta.returned_cells + " of " + meta.cells],
     ["Expected in all cells", meta.expected_incidents !== undefined ? expected(meta.expected_incidents) : "?"]]
      .forEach(function (pair) {
        var dt = document.createElement("dt"); dt.textContent = pair[0];
        var dd = document.createElement("dd"); dd.textContent = pair[1];
        dl.appendChild(dt); dl.appendChild(dd);
      });
    var note = document.createElement("p");
    note.className = "note";
    note.textContent = meta.note || "";
    el("provenance").replaceChildren(dl, note);
  }

  function zoomTo(rank) {
    var target = state.byRank[rank];
    if (!target) { return; }
    map.setView(target.getBounds().getCenter(), Math.max(map.getZoom(), 15), { animate: false });
    target.openPopup();
  }

  function showList(features, fresh) {
    var list = el("cells");
    list.replaceChildren();
    var perPlace = {}, seen = {};
    features.forEach(function (f) { var k = f.properties.place; perPlace[k] = (perPlace[k] || 0) + 1; });
    features.forEach(function (f) {
      var p = f.properties;
      seen[p.place] = (seen[p.place] || 0) + 1;
      var li = document.createElement("li");
      li.dataset.rank = p.rank;
      var button = document.createElement("button");
      button.type = "button";
      var line = document.createElement("span");
      line.className = "line";
      var rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = p.rank + ".";
      var place = document.createElement("span");
      place.className = "place";
      place.textContent = p.place || ("cell " + p.cell_id);
      var name = document.createElement("span");
      name.className = "name";
      name.append(place);
      if (perPlace[p.place] > 1) {  // several listed cells in one place: which one of them this is
        var nth = document.createElement("span");
        nth.className = "nth";
        nth.textContent = " cell " + seen[p.place] + " of " + perPlace[p.place];
        nth.title = "listed cell " + seen[p.place] + " of the " + perPlace[p.place] + " listed in " + p.place;
        name.append(nth);
      }
      line.append(rank, name);
      var risk = document.createElement("span");
      risk.className = "expected";
      risk.textContent = expected(p.risk) + " expected";
      line.append(risk);
      if (fresh && fresh[p.cell_id]) {
        li.classList.add("new");
        var badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "new";
        line.append(badge);
      }
      var reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = (p.reasons && p.reasons[0]) || "no single feature stands out";
      button.append(line, reason);
      button.addEventListener("click", function () { zoomTo(p.rank); });
      li.appendChild(button);
      list.appendChild(li);
    });
  }

  function showComparison(collection, previous, previousWeek) {
    var shown = collection.features.length;
    var text = el("list-compare");
    if (!previous) {
      text.textContent = "No forecast was published for an earlier week, so nothing is marked as new.";
      return null;
    }
    var before = {};
    previous.features.forEach(function (f) { before[f.properties.cell_id] = true; });
    var fresh = {}, count = 0;
    collection.features.forEach(function (f) {
      if (!before[f.properties.cell_id]) { fresh[f.properties.cell_id] = true; count += 1; }
    });
    text.textContent = count + " of these " + shown + " cells were not in the top " + previous.features.length +
      " of the forecast for the week of " + previousWeek + " (marked new).";
    return fresh;
  }

  function drawCells(collection, fresh) {
    if (state.cells) { map.removeLayer(state.cells); }
    state.byRank = {};
    var ends = classEnds(collection.metadata.cells || collection.features.length);
    state.cellStyle = function (f) {
      var p = f.properties;
      var isNew = fresh && fresh[p.cell_id];
      var colour = CLASSES[classOf(p.rank, ends)].colour;
      // zoomed out, a 250 m cell is a few pixels: a stroke of its own colour keeps it visible
      var small = map.getZoom() < SMALL_CELL_ZOOM;
      return { color: isNew ? "#08306b" : small ? colour : "#3b3b3b", weight: isNew ? 2.5 : small ? 3 : 0.6,
               fillOpacity: 0.85, fillColor: colour,
               className: "hotspot-cell rank-" + p.rank + (isNew ? " new-cell" : "") };
    };
    state.cells = L.geoJSON(collection, {
      style: state.cellStyle,
      onEachFeature: function (f, cellLayer) {
        var p = f.properties;
        state.byRank[p.rank] = cellLayer;
        cellLayer.bindPopup(function () { return popupContent(p, fresh && fresh[p.cell_id], classOf(p.rank, ends)); },
                            { maxWidth: 320 });
        cellLayer.bindTooltip("#" + p.rank + " · " + (p.place || "cell " + p.cell_id) + " · " + expected(p.risk) +
                              " expected");
      }
    }).addTo(map);
    showLegend(collection, ends);
  }

  function clearForecast() {
    if (state.cells) { map.removeLayer(state.cells); state.cells = null; }
    state.byRank = {};
    el("cells").replaceChildren();
    el("legend").replaceChildren();
    el("list-compare").textContent = "";
    el("heading-week").textContent = "";
    el("list-title").textContent = "Highest-risk cells";
    document.body.dataset.cells = "0";
  }

  function previousWeek(week) {
    var earlier = state.weeks.filter(function (w) { return w < week; });
    return earlier.length ? earlier[0] : null;  // the listing is newest first
  }

  function render(collection, previous, before) {
    clearMessage();
    var meta = collection.metadata;
    el("heading-week").textContent = "· forecast for the week of " + meta.period_start;
    el("list-title").textContent = "Top " + collection.features.length + " cells · week of " + meta.period_start;
    var fresh = showComparison(collection, previous, before);
    drawCells(collection, fresh);
    showList(collection.features, fresh);
    showProvenance(meta);
    if (!state.fitted) { fitArea(); }
    declutter();
    document.body.dataset.cells = String(collection.features.length);
    setStatus(collection.features.length + " of " + meta.cells + " cells shown");
  }

  function loadWeeks() {
    return getJSON(withProduct("/v1/forecasts?limit=200")).then(function (listing) {
      var select = el("week");
      var chosen = select.value;
      var seen = {};
      state.weeks = [];
      select.replaceChildren();
      var latest = document.createElement("option");
      latest.value = "latest"; latest.textContent = "latest";
      select.appendChild(latest);
      listing.publications.forEach(function (p) {
        if (seen[p.week]) { return; }
        seen[p.week] = true;
        state.weeks.push(p.week);
        var o = document.createElement("option");
        o.value = p.week; o.textContent = p.week + " (v" + p.version + ")";
        select.appendChild(o);
      });
      if (seen[chosen]) { select.value = chosen; }
      select.disabled = false;
    });
  }

  function loadAreas() {
    getJSON("/v1/areas").then(drawAreas).catch(function (err) {
      if (err.status === 401 || err.status === 403) { return; }  // the forecast request says so across the page
      setStatus("area outline not available: " + err.message, true);
    });
  }

  function load() {
    if (!apiKey()) { askKey(); return; }
    var week = el("week").value || "latest";
    var top = el("top").value;
    setStatus("loading…");
    var shown = currentProduct();
    getJSON(withProduct("/v1/forecasts/" + encodeURIComponent(week) + "?top=" + encodeURIComponent(top)))
      .then(function (collection) {
        if (shown !== currentProduct()) { return; }  // another product was picked meanwhile: its answer will come
        var before = previousWeek(collection.metadata.period_start);
        if (!before) { return render(collection, null, null); }
        return getJSON(withProduct("/v1/forecasts/" + encodeURIComponent(before) + "?top=" + encodeURIComponent(top)))
          .then(function (previous) { render(collection, previous, before); },
                function () { render(collection, null, null); });  // the comparison is extra: show the week anyway
      })
      .catch(showProblem);
  }

  function start() {
    if (!apiKey()) { askKey(); return; }
    clearMessage();
    if (!state.areas) { loadAreas(); }
    loadWeeks().then(load).catch(showProblem);
  }

  el("key-form").addEventListener("submit", function () {
    sessionStorage.setItem(KEY_STORE, el("api-key").value.trim());
    el("api-key").value = "";
    start();
  });
  el("change-key").addEventListener("click", askKey);
  el("message-key").addEventListener("click", askKey);
  el("week").addEventListener("change", load);
  if (picker) {
    // another product: its own published weeks (the week chosen is kept where it has one, else the latest)
    picker.addEventListener("change", function () {
      showProduct();
      clearForecast();  // never another product's cells under this product's title
      if (apiKey()) { loadWeeks().then(load).catch(showProblem); }
    });
  }
  el("top").addEventListener("change", load);
  start();
})();
