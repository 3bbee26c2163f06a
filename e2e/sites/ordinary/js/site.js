// The template's own small script: marks the current page in the navigation.
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('.navbar a').forEach(function (a) {
    if (a.getAttribute('href') === location.pathname) a.style.fontWeight = '700'
  })
})
