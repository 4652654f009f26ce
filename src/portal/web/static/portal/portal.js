// Partner Portal behaviour: the dialog that HTMX fills, focus in and out of it,
// and "select all" for bulk actions. No inline script anywhere (CSP).
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

  // Select-all checkbox for bulk actions: <input type=checkbox data-select-all="name">.
  document.addEventListener("change", function (event) {
    const box = event.target.closest("[data-select-all]");
    if (box) {
      const name = box.getAttribute("data-select-all");
      document.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (c) {
        c.checked = box.checked;
      });
    }
    const form = event.target.closest("form[data-autosubmit]");
    if (form && !event.target.closest("[data-select-all]") && event.target.name !== "line_ids") {
      form.requestSubmit();
    }
  });
})();
