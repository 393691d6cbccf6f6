/* Web Vitals of this page view, sent to the portal for its Prometheus histograms.
 *
 * The server writes on this script's tag where to send them (data-endpoint), which page this is
 * (data-page, its URL name), whose (data-tier, the member's tier or "anonymous") and the share of
 * page views to measure (data-sample-rate). A page
 * view not drawn loads nothing more; one that is loads the web-vitals library (data-library,
 * vendored from npm, see package.json) with this tag's CSP nonce once the page has loaded and
 * painted, and sends FCP, LCP, CLS, INP and TTFB in one beacon when the page is hidden (the
 * member leaves, switches tab or app).
 * The page works the same without this script: it only reports. base.html writes it inline,
 * under the request's nonce (portal/inline.py), so its tag has no `src`: no request of its own
 * is on the way to the first paint.
 */
(function () {
  "use strict";
  var tag = document.currentScript;
  if (!tag || !navigator.sendBeacon || !window.JSON) return;
  var rate = parseFloat(tag.getAttribute("data-sample-rate"));
  if (!(Math.random() < rate)) return;

  var endpoint = tag.getAttribute("data-endpoint");
  var page = tag.getAttribute("data-page");
  var tier = tag.getAttribute("data-tier");
  var queue = [];

  function queueMetric(metric) {
    queue.push({ name: metric.name, value: metric.value });
  }

  function flush() {
    if (!queue.length) return;
    var body = JSON.stringify({ page: page, tier: tier, metrics: queue });
    queue = [];
    // A string goes as text/plain: a simple request, with no preflight.
    navigator.sendBeacon(endpoint, body);
  }

  // The library reports each metric once it is final, at the latest when the page is hidden. Its
  // visibilitychange listeners capture on window, so they run before this one (which does not)
  // and the queue already holds what they reported.
  addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush();
  });
  addEventListener("pagehide", flush);

  function loadLibrary() {
    var library = document.createElement("script");
    library.src = tag.getAttribute("data-library");
    library.nonce = tag.nonce;
    library.onload = function () {
      var vitals = window.webVitals;
      if (!vitals) return;
      vitals.onFCP(queueMetric);
      vitals.onLCP(queueMetric);
      vitals.onCLS(queueMetric);
      vitals.onINP(queueMetric);
      vitals.onTTFB(queueMetric);
    };
    document.head.appendChild(library);
  }

  // The library reads what happened before it arrived (its observers are `buffered`), so it is
  // fetched only once the page has loaded and painted its first frame (the frame after this
  // animation frame): loaded during parsing, its request and its script would compete with the
  // first paint, and on a slow phone push the page's Largest Contentful Paint back.
  function afterFirstPaint() {
    requestAnimationFrame(function () {
      setTimeout(loadLibrary, 0);
    });
  }
  if (document.readyState === "complete") afterFirstPaint();
  else addEventListener("load", afterFirstPaint);
})();
