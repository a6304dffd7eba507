// Lindung staff pages: the two things that change without a reload. Everything works without
// this script too (the form posts, the import page shows its state when reloaded).
"use strict";

// The spreadsheet upload: show the bytes sent, then go to the import's page.
document.querySelectorAll("form[data-upload]").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    if (!window.XMLHttpRequest || !window.FormData) return;
    event.preventDefault();
    var box = form.querySelector(".upload-progress");
    var bar = form.querySelector("progress");
    var button = form.querySelector("button[type=submit]");
    box.hidden = false;
    button.disabled = true;
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    request.addEventListener("load", function () {
      if (request.status < 400 && request.responseURL) {
        window.location.assign(request.responseURL);
      } else {
        // An error page (too large, wrong type, expired form): show it as it is.
        document.open();
        document.write(request.responseText);
        document.close();
      }
    });
    request.addEventListener("error", function () {
      button.disabled = false;
      box.hidden = true;
      alert("Unggahan terputus. Periksa sambungan lalu coba lagi.");
    });
    request.send(new FormData(form));
  });
});

// An import's progress: ask every second until it is done, then show its report.
document.querySelectorAll("[data-import-page]").forEach(function (section) {
  var status = document.getElementById("import-status");
  if (status.dataset.status === "done" || status.dataset.status === "failed") return;
  var bar = document.getElementById("import-progress");
  var rows = document.getElementById("import-rows");
  var names = { queued: "menunggu giliran", running: "sedang diproses", done: "selesai", failed: "gagal" };
  var grouped = function (n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "."); };
  function poll() {
    fetch(section.dataset.importPage, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (answer.status === 401) { window.location.reload(); return null; }
        return answer.json();
      })
      .then(function (job) {
        if (!job) return;
        if (job.rows_total !== null) {
          bar.max = Math.max(job.rows_total, 1);
          bar.value = job.rows_done;
          rows.textContent = grouped(job.rows_done) + " dari " + grouped(job.rows_total);
        }
        ["registered", "repeated", "rejected"].forEach(function (name) {
          var cell = document.querySelector('[data-import="' + name + '"]');
          if (cell) cell.textContent = grouped(job[name]);
        });
        status.dataset.status = job.status;
        status.textContent = names[job.status] || job.status;
        if (job.status === "done" || job.status === "failed") {
          window.location.reload();  // the report of rejected rows
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
});
