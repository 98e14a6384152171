// Applies the theme saved by the toggle before the first paint (a classic script in
// <head>: no flash of the wrong theme). Without a saved choice, CSS follows
// prefers-color-scheme.
(function () {
  try {
    var t = localStorage.getItem('chronicle-theme');
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
  } catch (e) { /* storage disabled: follow the system */ }
})();
