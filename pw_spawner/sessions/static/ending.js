// On every hub page (home, spawn-pending, the sessions page...): a warning for each of the user's
// running sessions whose walltime ends soon, from the sessions JSON view, checked every 30 s. Values
// go in as text only (details come from jobs).
(function () {
  "use strict";
  const box = document.getElementById("pw-ending-soon");
  if (!box) return;
  const api = box.dataset.api, me = box.dataset.user, xsrf = box.dataset.xsrf;

  async function check() {
    let data;
    try {
      const resp = await fetch(`${api}?limit=50`, {headers: {"X-XSRFToken": xsrf}});
      if (!resp.ok) return;
      data = await resp.json();
    } catch (err) {
      return;  // the hub is restarting, or offline: say nothing rather than something wrong
    }
    box.replaceChildren();
    for (const s of data.sessions) {
      if (s.user !== me || s.state !== "running" || !s.ending_soon) continue;
      const note = document.createElement("div");
      note.className = "alert alert-warning mb-2";
      note.setAttribute("role", "status");
      note.dataset.jobId = s.job_id;
      const which = s.server_name ? `Your session "${s.server_name}"` : "Your session";
      const left = (/, ([^,]* left)$/.exec(s.detail) || [null, "it ends soon"])[1];
      note.textContent = `${which} (${s.app_name || s.app}, job ${s.job_id}) reaches its time limit: ` +
        `${left}. Save your work; when it ends, the app stops.`;
      box.appendChild(note);
    }
  }

  check();
  setInterval(check, 30000);
})();
