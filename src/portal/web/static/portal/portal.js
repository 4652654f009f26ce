// Partner Portal behaviour: the dialog that HTMX fills, focus in and out of it,
// focus on a refused form's first error, forms that submit once, and "select all" for
// bulk actions. No inline script anywhere (CSP).
(function () {
  "use strict";
  let opener = null;

  function dialog() { return document.getElementById("dialog"); }

  function openDialog() {
    const d = dialog();
    if (!d) return;
    if (!d.open) d.showModal();
    // After a refused submit, land on the first field with an error.
    const first = d.querySelector("[aria-invalid=true]") ||
      d.querySelector("[autofocus], input:not([type=hidden]), select, textarea, button");
    if (first) first.focus();
  }

  function closeDialog() {
    const d = dialog();
    if (d && d.open) d.close();
  }

  document.addEventListener("click", function (event) {
    const trigger = event.target.closest("[hx-target='#dialog-body']");
    if (trigger) opener = trigger;
    if (event.target.closest("[data-close-dialog]")) {
      event.preventDefault();
      closeDialog();
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "dialog-body") openDialog();
  });

  // The server says "done": close the dialog (the page refreshes its own parts).
  document.addEventListener("closeDialog", closeDialog);

  document.addEventListener("close", function (event) {
    if (event.target === dialog()) {
      document.getElementById("dialog-body").innerHTML = "";
      if (opener && document.body.contains(opener)) opener.focus();
      opener = null;
    }
  }, true);

  // A page drawn after a refused submit: land on the first field with an error (the
  // summary above the form lists them all).
  document.addEventListener("DOMContentLoaded", function () {
    const first = document.querySelector("main [aria-invalid=true]");
    if (first && !first.closest("dialog")) first.focus();
  });

  // One submission per form: a second click (or Enter) while the first is on its way
  // is ignored. <form data-submit-once>; the server refuses a replay anyway.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-submit-once]");
    if (!form) return;
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) {
      b.setAttribute("aria-disabled", "true");
      b.classList.add("is-busy");
    });
  });

  // A page the browser brings back from its cache (Back) may be sent again: the server
  // answers a second post of one form with the first one's result.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submitting]").forEach(function (form) {
      delete form.dataset.submitting;
      form.querySelectorAll("[aria-disabled=true]").forEach(function (b) {
        b.removeAttribute("aria-disabled");
        b.classList.remove("is-busy");
      });
    });
  });

  // Select-all checkbox for bulk actions: <input type=checkbox data-select-all="name">.
  // A link to a closed <details> (an invoice's section, #section-<id>) opens it, on
  // arrival with the address and on a click, even when the address already ends so.
  function openDetails(id) {
    const target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (location.hash) {
      openDetails(decodeURIComponent(location.hash.slice(1)));
      const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) target.scrollIntoView();
    }
  });
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[href^='#']");
    if (link) openDetails(decodeURIComponent(link.getAttribute("href").slice(1)));
  });

  document.addEventListener("change", function (event) {
    const box = event.target.closest("[data-select-all]");
    if (box) {
      const name = box.getAttribute("data-select-all");
      document.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (c) {
        c.checked = box.checked;
      });
    }
    // A search field that adds what it finds to a list: <input list=… data-adds-to="id of
    // a textarea">; a name picked among its suggestions joins the list, one a line, once.
    const adder = event.target.closest("input[data-adds-to]");
    const list = adder && document.getElementById(adder.getAttribute("data-adds-to"));
    if (adder && list && adder.list) {
      const name = adder.value.trim();
      const offered = Array.from(adder.list.options).some(function (o) { return o.value === name; });
      const held = list.value.split("\n").map(function (n) { return n.trim(); });
      if (name && offered) {
        if (held.indexOf(name) < 0) list.value = held.filter(Boolean).concat([name]).join("\n");
        adder.value = "";
      }
    }
    const form = event.target.closest("form[data-autosubmit]");
    if (form && !event.target.closest("[data-select-all]") && event.target.name !== "line_ids") {
      form.requestSubmit();
    }
  });
})();
