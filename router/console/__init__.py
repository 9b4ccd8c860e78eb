"""The operator console (docs/console.md): a page the router serves at `/console` from
files shipped in this package, signed in with the admin key, that works through the admin
API like the CLI does.

`session` signs and checks the console's session cookie and its CSRF token; `static/`
holds the page (HTML, CSS, one script: no build step, no CDN)."""
