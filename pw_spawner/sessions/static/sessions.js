// The sessions page: rows from the JSON view, refreshed every 5 s; values go in as text only.
(function () {
  "use strict";
  const root = document.getElementById("pw-sessions");
  if (!root) return;
  const api = root.dataset.api, hubApi = root.dataset.hubApi, base = root.dataset.base;
  const xsrf = root.dataset.xsrf, admin = root.dataset.admin === "true";
  const body = document.querySelector("#pw-sessions-table tbody");
  const size = document.getElementById("pw-page-size");
  const filter = document.getElementById("pw-user-filter");
  let offset = 0, total = 0;

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
    if (resp.ok) render(await resp.json());
  }

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
