// Records, once the page has loaded, how many images decoded and how many script or resource
// errors occurred, in the attributes of <div id="page-check"> (read back by tests/test_docs.py).
(function () {
  var errors = 0;
  window.addEventListener("error", function () { errors += 1; }, true);
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var c = document.createElement("div");
    c.id = "page-check";
    c.hidden = true;
    c.setAttribute("data-images-total", String(imgs.length));
    c.setAttribute("data-images-loaded", String(ok));
    c.setAttribute("data-math", String(document.getElementsByTagName("math").length));
    c.setAttribute("data-errors", String(errors));
    c.setAttribute("data-state", "done");
    document.body.appendChild(c);
  });
})();
