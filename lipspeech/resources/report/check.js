window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-natural-width", String(img.naturalWidth));
  });
  var media = Array.prototype.slice.call(document.querySelectorAll("audio"));
  var left = media.length;
  function settle(a, ok) {
    if (a.hasAttribute("data-duration")) return;
    a.setAttribute("data-duration", ok ? String(a.duration) : "error");
    left -= 1;
    if (left === 0) document.body.setAttribute("data-media-checked", String(media.length));
  }
  if (left === 0) document.body.setAttribute("data-media-checked", "0");
  media.forEach(function (a) {
    a.addEventListener("loadedmetadata", function () { settle(a, true); });
    a.addEventListener("error", function () { settle(a, false); });
    if (a.readyState >= 1) settle(a, true);
    else if (a.error) settle(a, false);
  });
});
