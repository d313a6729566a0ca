// Alpaca sends the browser back here (the OAuth redirect URI). The session cookie is
// SameSite=Strict, so it does not ride on that cross-site redirect; this same-site page hands
// the code and state to the API itself, with the cookie, and the session that began the
// connection completes it.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const out = document.getElementById("result");
  const q = new URLSearchParams(location.search);
  const url = new URL("/api/mbt/handoff/callback", location.origin);
  for (const k of ["code", "state", "error"]) if (q.get(k)) url.searchParams.set(k, q.get(k));
  history.replaceState(null, "", location.pathname);  // the code does not stay in the address bar
  try {
    const r = await fetch(url, { credentials: "same-origin" });
    const doc = await r.json();
    if (!r.ok) throw new Error((doc.error || {}).message || r.statusText);
    out.textContent = `Connected: Alpaca account ${doc.data.account_number} (scope ${doc.data.scope}).`;
  } catch (e) {
    out.textContent = `Not connected: ${e.message}`;
    out.className = "error";
  }
});
