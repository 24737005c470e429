// Keliling HQ console: small conveniences only; every page works without this file.
// Loaded as a file from the console itself (the CSP allows no inline script).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Filters that are a single choice apply at once.
  for (const el of document.querySelectorAll(".autosubmit")) {
    el.addEventListener("change", () => el.form && el.form.requestSubmit());
  }
  // Forms that change something are sent once, even on a double click.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      // After the browser has read the clicked button's value into the form data.
      setTimeout(() => {
        for (const b of form.querySelectorAll("button")) b.disabled = true;
      }, 0);
    });
  }
});
