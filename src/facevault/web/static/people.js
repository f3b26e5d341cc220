// Photo libraries' People pages (issue 13). Loaded after app.js and uses its helpers.
"use strict";

function peoplePage() {
  main.append(h("h1", {}, "People"), h("p", {}, "Photo libraries: coming soon."));
}
