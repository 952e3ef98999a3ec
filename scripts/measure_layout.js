// Injected by check_html.py into a copy of a rendered page: once MathJax has typeset the page,
// measure what a reader sees at the current window width and write it, as JSON, into
// <pre id="layout-report"> for the check to read from the dumped DOM.
(function () {
  function round(x) {
    return Math.round(x * 10) / 10;
  }
  function sticksOut(element, articleRight) {
    return element.getBoundingClientRect().right > articleRight + 1;
  }
  function measure() {
    const article =
      document.querySelector("article.bd-article") || document.querySelector("article") || document.body;
    const articleRight = article.getBoundingClientRect().left + article.clientWidth;
    const out = {
      height: document.documentElement.scrollHeight,
      article: round(article.clientWidth),
      equations: [],
      tables: [],
      code: [],
      folds: 0,
    };
    article.querySelectorAll('mjx-container[display="true"]').forEach(function (container, index) {
      const math = container.querySelector("mjx-math") || container;
      const box = container.closest("div.math") || container.parentElement;
      const number = box.querySelector(".eqno");
      const need =
        math.getBoundingClientRect().width + (number ? number.getBoundingClientRect().width + 8 : 0);
      out.equations.push({
        index: index + 1,
        label: number ? number.textContent.replace(/[^\d().]/g, "") : "",
        need: round(need),
        room: round(box.clientWidth),
        sticksOut: sticksOut(container, articleRight),
      });
    });
    article.querySelectorAll("table").forEach(function (table) {
      if (table.closest(".highlight")) return;
      const figure = table.closest("figure");
      const caption = table.querySelector("caption") || (figure && figure.querySelector("figcaption"));
      const head = Array.from(table.querySelectorAll("thead th, tr:first-child th"))
        .map(function (cell) {
          return cell.textContent.trim();
        })
        .filter(Boolean)
        .join(" | ");
      out.tables.push({
        head: head.slice(0, 60),
        caption: !!(caption && caption.textContent.trim()),
        need: table.scrollWidth,
        room: Math.min(table.clientWidth || article.clientWidth, article.clientWidth),
        sticksOut: sticksOut(table, articleRight),
      });
    });
    article.querySelectorAll("div.highlight pre").forEach(function (pre) {
      out.code.push({
        first: pre.textContent.split("\n")[0].slice(0, 60),
        need: pre.scrollWidth,
        room: pre.clientWidth,
        sticksOut: sticksOut(pre, articleRight),
      });
    });
    out.folds = article.querySelectorAll(
      ".cell .admonition.hide, .cell details.hide, .cell details.above-input, .cell details.below-input"
    ).length;
    const report = document.createElement("pre");
    report.id = "layout-report";
    report.textContent = JSON.stringify(out);
    document.body.appendChild(report);
  }
  window.addEventListener("load", function () {
    const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
    typeset.then(function () {
      setTimeout(measure, 300);
    });
  });
})();
