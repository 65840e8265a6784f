// The sessions page: rows from the JSON view, refreshed every 5 s; values go in as text only.
// With sharing on, the user's own running sessions have Share (a link with a share code of the hub's
// API, in the page's dialog) and, once shared, Revoke sharing (the server's codes and shares deleted).
(function () {
  "use strict";
  const root = document.getElementById("pw-sessions");
  if (!root) return;
  const api = root.dataset.api, hubApi = root.dataset.hubApi, base = root.dataset.base;
  const xsrf = root.dataset.xsrf, admin = root.dataset.admin === "true";
  const me = root.dataset.user, sharing = root.dataset.sharing === "true";
  const body = document.querySelector("#pw-sessions-table tbody");
  const size = document.getElementById("pw-page-size");
  const filter = document.getElementById("pw-user-filter");
  let offset = 0, total = 0;
  // Who has access to each of the user's servers, and how many links are live (by server name).
  let shared = new Map();

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function button(td, label, cls, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn btn-sm me-1 " + cls;
    b.textContent = label;
    b.addEventListener("click", onclick);
    td.appendChild(b);
    return b;
  }

  function link(td, label, href, cls) {
    const a = document.createElement("a");
    a.className = "btn btn-sm me-1 " + cls;
    a.textContent = label;
    a.href = href;
    td.appendChild(a);
    return a;
  }

  async function cancel(s) {
    const what = s.server_name ? `the session "${s.server_name}"` : "your default session";
    if (!window.confirm(`Cancel ${what} (job ${s.job_id})? The app and its job end.`)) return;
    const path = s.server_name
      ? `users/${encodeURIComponent(s.user)}/servers/${encodeURIComponent(s.server_name)}`
      : `users/${encodeURIComponent(s.user)}/server`;
    const resp = await fetch(hubApi + path, {method: "DELETE", headers: {"X-XSRFToken": xsrf}});
    if (!resp.ok && resp.status !== 202) window.alert(`The session could not be cancelled (${resp.status}).`);
    refresh();
  }

  // Relaunch a session with its own options: as they are (through the hub's API), or on the spawn
  // form pre-filled with them (edit). The server is the session's, or a new one while it runs.
  async function relaunch(s, edit) {
    const resp = await fetch(base + "sessions/api/relaunch", {
      method: "POST", headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
      body: JSON.stringify({user: s.user, server_name: s.server_name, job_id: s.job_id, edit: edit}),
    });
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      window.alert(`The session could not be relaunched: ${answer.message || resp.status}`);
      return;
    }
    if (edit) {
      window.location.href = answer.spawn_url;
      return;
    }
    const start = await fetch(hubApi + answer.server_api, {
      method: "POST", headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
      body: JSON.stringify(answer.options),
    });
    if (start.ok || start.status === 202) {
      window.location.href = answer.pending_url;
    } else {
      const why = await start.json().catch(() => ({}));
      window.alert(`The session could not be started: ${why.message || start.status}`);
      refresh();
    }
  }

  // The hub API's own words for a refusal ({"status", "message"}), never a page or a traceback.
  async function why(resp) {
    const answer = await resp.json().catch(() => ({}));
    return typeof answer.message === "string" && answer.message ? answer.message : `HTTP ${resp.status}`;
  }

  // The hub API's path of a server below shares/ or share-codes/ ("alice/" is the default server).
  function serverPath(s) {
    return `${encodeURIComponent(s.user)}/${encodeURIComponent(s.server_name)}`;
  }

  async function loadShares() {
    const get = (what) => fetch(`${hubApi}${what}/${encodeURIComponent(me)}?limit=200`,
      {headers: {"X-XSRFToken": xsrf}}).then((r) => (r.ok ? r.json() : {items: []}));
    const [shares, codes] = await Promise.all([get("shares"), get("share-codes")]).catch(() => [{items: []}, {items: []}]);
    const seen = new Map();
    const entry = (name) => seen.get(name) || seen.set(name, {users: [], links: 0}).get(name);
    for (const share of shares.items || []) {
      entry(share.server.name).users.push(share.user ? share.user.name : `group ${share.group.name}`);
    }
    for (const code of codes.items || []) entry(code.server.name).links += 1;
    shared = seen;
  }

  function showDialog() {
    const dialog = document.getElementById("pw-share-dialog");
    if (window.bootstrap && window.bootstrap.Modal) window.bootstrap.Modal.getOrCreateInstance(dialog).show();
    else dialog.classList.add("d-block", "show");  // without Bootstrap's script: shown as a panel
  }

  async function share(s) {
    const what = s.server_name ? `your session "${s.server_name}"` : "your default session";
    document.getElementById("pw-share-what").textContent =
      `Share ${what} (job ${s.job_id}, ${s.app_name || s.app}) with another user of this hub.`;
    const result = document.getElementById("pw-share-result"), error = document.getElementById("pw-share-error");
    const waiting = document.getElementById("pw-share-waiting");
    document.getElementById("pw-share-link").value = "";
    result.classList.add("d-none");
    error.classList.add("d-none");
    waiting.classList.remove("d-none");
    showDialog();
    let resp;
    try {
      resp = await fetch(hubApi + "share-codes/" + serverPath(s), {
        method: "POST", headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"}, body: "{}",
      });
    } catch (err) {
      resp = null;
    }
    waiting.classList.add("d-none");
    if (!resp || !resp.ok) {
      error.textContent = `No link could be made: ${resp ? await why(resp) : "the hub did not answer"}.`;
      error.classList.remove("d-none");
      return;
    }
    const answer = await resp.json();
    const link = document.getElementById("pw-share-link");
    link.value = answer.full_accept_url || new URL(answer.accept_url, window.location.origin).href;
    document.getElementById("pw-share-expires").textContent = answer.expires_at
      ? `Anyone logged in who opens it before ${new Date(answer.expires_at).toLocaleString()} gets access, ` +
        "until you revoke sharing." : "";
    result.classList.remove("d-none");
    link.select();
    refresh();
  }

  async function copyLink() {
    const link = document.getElementById("pw-share-link"), copy = document.getElementById("pw-share-copy");
    link.select();
    try {
      await navigator.clipboard.writeText(link.value);
    } catch (err) {
      document.execCommand("copy");  // plain http on another host: no clipboard API
    }
    copy.textContent = "Copied";
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  }

  async function revoke(s) {
    const what = s.server_name ? `the session "${s.server_name}"` : "your default session";
    const known = shared.get(s.server_name) || {users: [], links: 0};
    const who = known.users.length ? ` ${known.users.join(", ")} lose access;` : "";
    const links = known.links ? ` ${known.links} link(s) stop working;` : "";
    if (!window.confirm(`Stop sharing ${what} (job ${s.job_id})?${who}${links} you keep yours.`)) return;
    // Codes first, so that no link is accepted between the two requests.
    for (const kind of ["share-codes", "shares"]) {
      const resp = await fetch(`${hubApi}${kind}/${serverPath(s)}`, {method: "DELETE", headers: {"X-XSRFToken": xsrf}});
      if (!resp.ok) {
        window.alert(`Sharing could not be revoked: ${await why(resp)}.`);
        break;
      }
    }
    refresh();
  }

  function render(data) {
    body.replaceChildren();
    for (const s of data.sessions) {
      const tr = document.createElement("tr");
      tr.dataset.jobId = s.job_id;
      tr.dataset.state = s.state;
      if (s.ending_soon) tr.className = "table-warning";
      if (admin) cell(tr, s.user);
      cell(tr, s.job_id);
      cell(tr, s.app_name || s.app);
      cell(tr, s.profile);
      cell(tr, s.resource || "hub host");
      cell(tr, s.hours);
      cell(tr, s.cores);
      cell(tr, s.memory_gb === null ? "" : s.memory_gb);
      cell(tr, s.gpus);
      cell(tr, s.detail, "pw-state");
      const actions = cell(tr, "");
      if (s.state === "running" && s.url) link(actions, "Join", s.url, "btn-primary");
      if (s.state !== "finished" && s.active) button(actions, "Cancel", "btn-outline-danger", () => cancel(s));
      if (s.state === "finished" && !s.active) {
        button(actions, "Relaunch", "btn-outline-primary", () => relaunch(s, false));
      }
      if (!s.active || s.state !== "finished") {
        const settings = button(actions, "Settings", "btn-outline-secondary", () => relaunch(s, true));
        settings.title = s.state === "finished" ? "Edit this session's settings and start it again"
          : "Start another session with these settings";
      }
      if (sharing && s.user === me && s.state === "running" && s.active) {
        button(actions, "Share", "btn-outline-success", () => share(s)).title = "Make a link that lets another user in";
        const known = shared.get(s.server_name);
        if (known && (known.users.length || known.links)) {
          button(actions, "Revoke sharing", "btn-outline-warning", () => revoke(s));
          const note = document.createElement("div");
          note.className = "small text-muted pw-shared";
          note.textContent = known.users.length ? `shared with ${known.users.join(", ")}` : "link not used yet";
          actions.appendChild(note);
        }
      }
      body.appendChild(tr);
    }
    total = data.total;
    const last = Math.min(offset + data.sessions.length, total);
    document.getElementById("pw-range").textContent = total ? `${offset + 1} – ${last} of ${total}` : "no sessions";
    document.getElementById("pw-refreshed").textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function refresh() {
    const params = new URLSearchParams({limit: size.value, offset: String(offset)});
    if (filter && filter.value.trim()) params.set("user", filter.value.trim());
    const resp = await fetch(`${api}?${params}`, {headers: {"X-XSRFToken": xsrf}});
    if (!resp.ok) return;
    const data = await resp.json();
    if (sharing) await loadShares();
    render(data);
  }

  if (sharing) document.getElementById("pw-share-copy").addEventListener("click", copyLink);
  size.addEventListener("change", () => { offset = 0; refresh(); });
  if (filter) filter.addEventListener("input", () => { offset = 0; refresh(); });
  document.getElementById("pw-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - Number(size.value)); refresh();
  });
  document.getElementById("pw-next").addEventListener("click", () => {
    if (offset + Number(size.value) < total) { offset += Number(size.value); refresh(); }
  });
  refresh();
  setInterval(refresh, 5000);
})();
