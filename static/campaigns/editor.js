// The visual workflow editor: SortableJS drag and drop on the canvas's sequences, zoom,
// and HTMX for every edit (each posts the canvas's version; the answer is the canvas).
(function () {
  "use strict";
  let zoom = 1;
  let scroll = null;

  function canvas() { return document.getElementById("canvas"); }

  function applyZoom() {
    const inner = document.getElementById("canvas-zoom");
    if (inner) inner.style.transform = zoom === 1 ? "" : "scale(" + zoom + ")";
    const label = document.getElementById("zoom-level");
    if (label) label.textContent = Math.round(zoom * 100) + "%";
  }

  // The position a dropped item has among the steps of its new sequence (a step type
  // dropped a moment ago, its edit still on its way, counts as the step it will be).
  function stepIndex(item) {
    let index = 0;
    for (let el = item.previousElementSibling; el; el = el.previousElementSibling) {
      if (el.classList.contains("step") || el.classList.contains("palette-item")) index++;
    }
    return index;
  }

  // Edits go one at a time, in the order they were made: an edit made while another is
  // on its way waits for its answer and then goes with the canvas's new version, so a
  // quick second drop is applied too, never refused as stale nor lost.
  const pending = [];
  let sending = false;

  function post(url, values) {
    pending.push({url: url, values: values});
    sendNext();
  }

  function sendNext() {
    if (sending || !pending.length) return;
    const edit = pending.shift();
    const region = canvas();
    edit.values.version = region.dataset.version;
    sending = true;
    htmx.ajax("POST", edit.url, {source: region, target: "#canvas", swap: "outerHTML",
                                 values: edit.values})
      .finally(function () { sending = false; sendNext(); });
  }

  // A new step's id is made where it is dropped: two drops are two steps, and the same
  // request sent twice (a retrying network) is still one.
  function newStepId() {
    const bytes = new Uint8Array(5);
    crypto.getRandomValues(bytes);
    return "s" + Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function slot(list, item) {
    return {parent: list.dataset.parent, path: list.dataset.path, index: stepIndex(item)};
  }

  // Over a card or a slot, the upper half drops before it and the lower half after it.
  // On a touch screen a swipe pans the canvas; a drag starts after a short press.
  const common = {forceFallback: true, fallbackOnBody: true, fallbackTolerance: 3,
                  delay: 200, delayOnTouchOnly: true, touchStartThreshold: 5,
                  invertSwap: true, invertedSwapThreshold: 1, emptyInsertThreshold: 24,
                  animation: 120};

  function init() {
    const region = canvas();
    applyZoom();
    if (!region || region.dataset.editable !== "true" || region.dataset.sortable) return;
    region.dataset.sortable = "1";
    const palette = region.querySelector(".palette-list");
    Sortable.create(palette, Object.assign({}, common, {
      group: {name: "steps", pull: "clone", put: false}, sort: false,
      onEnd: function (event) {
        if (!event.to.classList.contains("sequence")) return;
        post(region.dataset.addUrl, Object.assign({type: event.item.dataset.type,
                                                   step_id: newStepId()},
                                                  slot(event.to, event.item)));
      },
    }));
    region.querySelectorAll(".sequence").forEach(function (list) {
      Sortable.create(list, Object.assign({}, common, {
        // Slots are places to drop at (never dragged themselves): a drop on the slot
        // between two steps lands between them.
        group: "steps", draggable: ".step, .slot", handle: ".step-card, .slot",
        filter: ".slot, .step-remove", preventOnFilter: false,
        onEnd: function (event) {
          if (event.from === event.to && event.oldIndex === event.newIndex) return;
          post(region.dataset.moveUrl, Object.assign({step: event.item.dataset.stepId},
                                                     slot(event.to, event.item)));
        },
      }));
    });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-zoom]");
    if (button) {
      const how = button.dataset.zoom;
      zoom = how === "in" ? Math.min(2, zoom + 0.1) : how === "out" ? Math.max(0.3, zoom - 0.1) : 1;
      zoom = Math.round(zoom * 10) / 10;
      applyZoom();
      return;
    }
    const close = event.target.closest("[data-close-panel]");
    if (close) {
      event.preventDefault();
      const panel = document.getElementById("panel");
      panel.dataset.stepId = "";
      panel.innerHTML = '<p class="panel-empty">Click a step to see its settings.</p>';
    }
  });

  // A refused edit answers with the canvas as it is (409 stale, 400/422 refused): show it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    if ([400, 409, 422].includes(status) && document.getElementById("editor")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
    const viewport = document.getElementById("canvas-viewport");
    if (viewport) scroll = [viewport.scrollLeft, viewport.scrollTop];
  });

  document.addEventListener("htmx:afterSettle", function () {
    const viewport = document.getElementById("canvas-viewport");
    if (viewport && scroll) { viewport.scrollLeft = scroll[0]; viewport.scrollTop = scroll[1]; }
    // The step just added or moved takes the focus (a keyboard user goes on from there).
    const region = canvas();
    if (region && region.dataset.focus) {
      const link = document.querySelector("#step-" + CSS.escape(region.dataset.focus) + " .step-open");
      if (link) link.focus({preventScroll: true});
      region.dataset.focus = "";
    }
    // A panel whose step is gone (deleted here) closes.
    const panel = document.getElementById("panel");
    if (panel && panel.dataset.stepId && !document.getElementById("step-" + panel.dataset.stepId)) {
      panel.dataset.stepId = "";
      panel.innerHTML = '<p class="panel-empty">Click a step to see its settings.</p>';
    }
  });

  document.addEventListener("htmx:load", init);
  if (document.readyState !== "loading") init();
  else document.addEventListener("DOMContentLoaded", init);
})();
