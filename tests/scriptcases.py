"""The selections the golden-file tests render, shared with the script that regenerates the files."""

from __future__ import annotations

from pathlib import Path

from pw_spawner.apps import AppLaunch, jupyter_launch, rstudio_launch, vnc_launch, xpra_launch
from pw_spawner.options import validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.schedulers import scheduler_classes
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.spawner import PWSpawner

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
HUB_ENV = {"JUPYTERHUB_API_TOKEN": "TOKEN", "JUPYTERHUB_USER": "alice",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}

#: The spawner's setup_lines for a case (none for the others).
SETUP_LINES = {"slurm.sh": ["source /etc/profile.d/modules.sh"]}

CASES = {
    "slurm.sh": ("slurm", "cpu-short", {"env": {"OMP_NUM_THREADS": "4", "GREETING": "it's a $(test)"},
                                         "logging": True, "hours": 2}),
    "slurm-gpu.sh": ("slurm", "gpu", {"gpus": 2}),
    "pbs.sh": ("pbs", "gpu", {"environment": "cuda"}),
    "torque.sh": ("torque", "cpu-long", {"memory": "128G", "hours": 36}),
    "local.sh": ("local", "cpu-short", {"environment": "conda-base", "env": {"A": "1"}}),
    # The apps behind jupyter-standaloneproxy, with the spawner's default settings.
    "rstudio.sh": ("slurm", "rstudio", {"env": {"R_LIBS_USER": "~/R/4.3"}}),
    "vnc.sh": ("slurm", "desktop", {"resolution": "1920x1080"}),
    "xpra.sh": ("pbs", "xpra-gui", {}),
}
# Every scheduler of the package has a golden script of its own (a new scheduler module brings
# its file: python tests/scriptcases.py writes it).
for _kind, _cls in scheduler_classes().items():
    if _cls.__module__.startswith("pw_spawner.") and not any(case[0] == _kind for case in CASES.values()):
        CASES[f"{_kind}.sh"] = (_kind, "gpu", {"env": {"OMP_NUM_THREADS": "2"}})
PROXY = ["jupyter-standaloneproxy"]


def app_launch(app: str) -> AppLaunch:
    """The launch PWSpawner makes for ``app`` with its default traits."""
    if app == "rstudio":
        return rstudio_launch(PROXY)
    if app == "vnc":
        return vnc_launch(PROXY, geometry="1920x1080",
                          novnc_dirs=("/usr/share/novnc", "/usr/local/share/novnc", "/opt/novnc"))
    if app == "xpra":
        return xpra_launch(PROXY)
    return jupyter_launch(["jupyterhub-singleuser"], ["--SingleUserNotebookApp.default_url=/lab"], "/lab")


def render_case(name: str) -> str:
    scheduler, profile, options = CASES[name]
    profiles = build_profiles(directory=REPO / "profiles")
    selection = validate_options(profiles, {"profile": profile, **options}, groups=["gpu-users"])
    return render_script(ScriptRequest(
        selection=selection, scheduler=scheduler, job_name="pw-alice",
        job_dir="/home/alice/.pw_spawner/jobs/pw-alice",
        app=app_launch(selection.app),
        bind_ip=scheduler_classes()[scheduler].default_bind_ip(), hub_env=HUB_ENV,
        setup_lines=SETUP_LINES.get(name, []),
        walltime_warning_s=PWSpawner.walltime_warning_minutes.default_value * 60,  # the default's
    ))


if __name__ == "__main__":  # python tests/scriptcases.py rewrites the golden files
    for case in CASES:
        (GOLDEN / case).write_text(render_case(case))
        print("wrote", GOLDEN / case)
