// Small behaviours for forms, kept out of the HTML: the Content-Security-Policy allows no inline scripts.
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-autosubmit]");
  if (select && select.form) select.form.submit();
});
