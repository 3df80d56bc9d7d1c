// The hostile-input corpus shared by the browser tests (xss_corpus.mjs for the agents' pages,
// web_chat.mjs for the widget): markup, handlers, javascript: URLs, CSS and template syntax that
// must show as literal text wherever they are displayed. What each payload does if it runs is
// observable: it sets `window.__xss`, adds `#xss-marker`, or opens a dialog.

// What a payload does if it ever runs: sets a global, adds an element, opens a dialog.
export const RUN =
  "window.__xss=1;document.documentElement.append(Object.assign(document.createElement('b'),{id:'xss-marker'}));alert('xss')";
// The same, without quotes of either kind (for unquoted attribute values and url()).
export const RUN_BARE = "window.__xss=1;alert(document.domain)";

// Each case: a label and the payload.
export const corpus = [
  ["script tag", `<script>${RUN}</script>`],
  ["script tag, mixed case", `<ScRiPt>${RUN}</sCrIpT>`],
  ["script with src", `<script src="data:text/javascript,${encodeURIComponent(RUN)}"></script>`],
  ["img onerror", `<img src=x onerror="${RUN}">`],
  ["img onerror, unquoted", `<img src=x onerror=${RUN_BARE}>`],
  ["svg onload", `<svg onload="${RUN}"><circle r="4"/></svg>`],
  ["svg script", `<svg><script>${RUN}</script></svg>`],
  ["body onload", `<body onload="${RUN}">hello</body>`],
  ["details ontoggle", `<details open ontoggle="${RUN}"><summary>x</summary></details>`],
  ["javascript: link", `<a href="javascript:${RUN}">click me</a>`],
  ["javascript: link, entity-encoded", `<a href="&#106;avascript:${RUN_BARE}">click me</a>`],
  ["javascript: form action", `<form action="javascript:${RUN_BARE}"><button>go</button></form>`],
  ["iframe srcdoc", `<iframe srcdoc="<script>${RUN.replaceAll("'", "&apos;")}</script>"></iframe>`],
  ["iframe javascript: src", `<iframe src="javascript:${RUN_BARE}"></iframe>`],
  ["object data", `<object data="javascript:${RUN_BARE}"></object><embed src="javascript:${RUN_BARE}">`],
  ["meta refresh", `<meta http-equiv="refresh" content="0;url=javascript:${RUN_BARE}">`],
  ["base href", `<base href="javascript:${RUN_BARE}//"><a href="x">relative</a>`],
  ["CSS expression", `<div style="width:expression(${RUN_BARE})">css</div>`],
  ["CSS url(javascript:)", `<div style="background:url(javascript:${RUN_BARE})">css</div><style>body{background-image:url("javascript:${RUN_BARE}")}</style>`],
  ["CSS @import", `<style>@import "javascript:${RUN_BARE}";</style>`],
  ["double-quoted attribute breakout", `"><script>${RUN}</script>`],
  ["single-quoted attribute breakout", `'><img src=x onerror=${RUN_BARE}>`],
  ["closing tags breakout", `</title></textarea></script></style><script>${RUN}</script>`],
  ["mutation XSS", `<math><mtext><table><mglyph><style><img src=x onerror="${RUN}">`],
  ["noscript breakout", `<noscript><p title="</noscript><img src=x onerror=${RUN_BARE}>">`],
  ["template injection", "{{ 7*7 }} ${7*7} <%= 7*7 %> {% raw %}"],
];
